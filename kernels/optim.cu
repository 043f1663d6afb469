// optim.cu: momentum SGD over all elements of one parameter tensor.
//   vel = momentum vel - lr (grad + weight_decay param); param += vel
// Shapes: any (flat, n elements). Reference: Cpu::sgd_momentum (src/backend/cpu.rs).

extern "C" __global__ void sgd_momentum(float* __restrict__ param, const float* __restrict__ grad,
                                        float* __restrict__ vel, long long n, float lr, float momentum,
                                        float weight_decay) {
    GRID_STRIDE(i, n) {
        float v = momentum * vel[i] - lr * (grad[i] + weight_decay * param[i]);
        vel[i] = v;
        param[i] += v;
    }
}
