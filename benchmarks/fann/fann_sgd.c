/* Online SGD with FANN 2.2 (float build) for benchmarks/peers.py.
 *
 *     cc -O2 -o fann_sgd fann_sgd.c -lfloatfann -lm
 *     fann_sgd IN OUT
 *
 * peers.py compiles this on demand (worker "fann") and talks to it through two
 * little-endian binary files:
 *
 *   IN:  int32 L, int32 sizes[L], int32 n, int32 epochs, float32 lr,
 *        float32 X[n][sizes[0]], float32 Y[n][sizes[L-1]],
 *        then per layer l = 0..L-2: float32 W[sizes[l]][sizes[l+1]], float32 b[sizes[l+1]]
 *   OUT: float64 warmup_s, float64 epoch_s[epochs], then the final W, b as in IN
 *
 * The net: fann_create_standard_array(sizes), hidden layers FANN_SIGMOID_SYMMETRIC
 * with steepness 1 (FANN computes 2 / (1 + exp(-2 s x)) - 1 = tanh(s x)), a
 * FANN_LINEAR output with steepness 1, FANN_ERRORFUNC_LINEAR (the default, TANH,
 * would train on atanh-stretched errors), momentum 0, FANN_TRAIN_INCREMENTAL: one
 * fann_train per sample, in order. Its update is w += lr * (t - z) * a_prev, so the
 * caller passes lr = workload lr * 2 / k to follow the gradient of the mean squared
 * error over the k outputs. Weights go in and out through fann_get_connection_array /
 * fann_set_weight_array; FANN numbers neurons layer by layer, each layer's bias neuron
 * (value 1) after its units.
 *
 * Timing as in every peers.py worker: one warm-up epoch, then `epochs` epochs, each
 * timed on its own (fann_train_epoch on a fann_train_data, CLOCK_MONOTONIC).
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <floatfann.h>

static void die(const char *what)
{
    fprintf(stderr, "fann_sgd: %s\n", what);
    exit(2);
}

static void read_exact(FILE *f, void *buf, size_t size, size_t count)
{
    if (fread(buf, size, count, f) != count)
        die("input file too short");
}

static void write_exact(FILE *f, const void *buf, size_t size, size_t count)
{
    if (fwrite(buf, size, count, f) != count)
        die("cannot write the output file");
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* W[l] is (sizes[l], sizes[l+1]) row-major and b[l] has sizes[l+1] entries; the first
 * neuron of layer l has the global number start[l], its bias neuron start[l] + sizes[l].
 * Return the parameter the connection (from, to) holds. */
static float *param_of(unsigned int from, unsigned int to, int L, const int *sizes,
                       const unsigned int *start, float **W, float **b)
{
    for (int l = 1; l < L; l++) {
        if (to < start[l] || to >= start[l] + (unsigned int)sizes[l])
            continue;
        unsigned int j = to - start[l];
        if (from < start[l - 1] || from > start[l - 1] + (unsigned int)sizes[l - 1])
            die("connection does not come from the layer below");
        unsigned int i = from - start[l - 1];
        return i == (unsigned int)sizes[l - 1] ? &b[l - 1][j]
                                               : &W[l - 1][(size_t)i * sizes[l] + j];
    }
    die("connection into no layer");
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc != 3)
        die("usage: fann_sgd IN OUT");
    FILE *in = fopen(argv[1], "rb");
    if (!in)
        die("cannot open the input file");

    int L, n, epochs;
    float lr;
    read_exact(in, &L, sizeof L, 1);
    if (L < 2 || L > 64)
        die("bad layer count");
    int *sizes = malloc(L * sizeof *sizes);
    read_exact(in, sizes, sizeof *sizes, L);
    read_exact(in, &n, sizeof n, 1);
    read_exact(in, &epochs, sizeof epochs, 1);
    read_exact(in, &lr, sizeof lr, 1);
    int d = sizes[0], k = sizes[L - 1];

    struct fann_train_data *data = fann_create_train(n, d, k);
    if (!data)
        die("fann_create_train failed");
    for (int s = 0; s < n; s++)
        read_exact(in, data->input[s], sizeof(fann_type), d);
    for (int s = 0; s < n; s++)
        read_exact(in, data->output[s], sizeof(fann_type), k);

    float **W = malloc((L - 1) * sizeof *W), **b = malloc((L - 1) * sizeof *b);
    for (int l = 0; l < L - 1; l++) {
        W[l] = malloc((size_t)sizes[l] * sizes[l + 1] * sizeof(float));
        b[l] = malloc(sizes[l + 1] * sizeof(float));
        read_exact(in, W[l], sizeof(float), (size_t)sizes[l] * sizes[l + 1]);
        read_exact(in, b[l], sizeof(float), sizes[l + 1]);
    }
    fclose(in);

    unsigned int *layers = malloc(L * sizeof *layers);
    for (int l = 0; l < L; l++)
        layers[l] = (unsigned int)sizes[l];
    struct fann *ann = fann_create_standard_array(L, layers);
    if (!ann)
        die("fann_create_standard_array failed");
    fann_set_activation_function_hidden(ann, FANN_SIGMOID_SYMMETRIC);
    fann_set_activation_steepness_hidden(ann, 1.0f);
    fann_set_activation_function_output(ann, FANN_LINEAR);
    fann_set_activation_steepness_output(ann, 1.0f);
    fann_set_train_error_function(ann, FANN_ERRORFUNC_LINEAR);
    fann_set_training_algorithm(ann, FANN_TRAIN_INCREMENTAL);
    fann_set_learning_rate(ann, lr);
    fann_set_learning_momentum(ann, 0.0f);

    /* Global neuron numbers: layer by layer, each layer's units then its bias. */
    unsigned int *bias = malloc(L * sizeof *bias), *start = malloc(L * sizeof *start);
    fann_get_bias_array(ann, bias);
    start[0] = 0;
    for (int l = 1; l < L; l++)
        start[l] = start[l - 1] + layers[l - 1] + bias[l - 1];

    unsigned int n_con = fann_get_total_connections(ann);
    size_t n_params = 0;
    for (int l = 0; l < L - 1; l++)
        n_params += (size_t)(sizes[l] + 1) * sizes[l + 1];
    if (n_con != n_params)
        die("FANN's connection count is not that of a dense net with biases");
    struct fann_connection *con = malloc(n_con * sizeof *con);
    fann_get_connection_array(ann, con);
    for (unsigned int c = 0; c < n_con; c++)
        con[c].weight = *param_of(con[c].from_neuron, con[c].to_neuron, L, sizes, start, W, b);
    /* fann_set_weight_array looks each connection up in all of them: O(n_con^2), about
     * half a second for 64-128-128-10 (26k connections), before the timed part. */
    fann_set_weight_array(ann, con, n_con);

    double *times = malloc((epochs + 1) * sizeof *times);
    for (int e = 0; e <= epochs; e++) {  /* e = 0: the warm-up epoch */
        double t0 = now_s();
        fann_train_epoch(ann, data);
        times[e] = now_s() - t0;
    }

    fann_get_connection_array(ann, con);
    for (unsigned int c = 0; c < n_con; c++)
        *param_of(con[c].from_neuron, con[c].to_neuron, L, sizes, start, W, b) = con[c].weight;

    FILE *out = fopen(argv[2], "wb");
    if (!out)
        die("cannot open the output file");
    write_exact(out, times, sizeof *times, epochs + 1);
    for (int l = 0; l < L - 1; l++) {
        write_exact(out, W[l], sizeof(float), (size_t)sizes[l] * sizes[l + 1]);
        write_exact(out, b[l], sizeof(float), sizes[l + 1]);
    }
    if (fclose(out) != 0)
        die("cannot write the output file");
    fann_destroy(ann);
    fann_destroy_train(data);
    return 0;
}
