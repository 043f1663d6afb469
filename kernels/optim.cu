// optim.cu: momentum SGD over all elements of one parameter tensor.
//   vel = momentum vel - lr (grad + weight_decay param); param += vel
// Shapes: any (flat, n elements). Reference: Cpu::sgd_momentum (src/backend/cpu.rs).
//
// Packed models (Backend::models() = P; reference src/backend/packed.rs): grid = (blocks, P),
// model p = blockIdx.y; param, grad, vel move by p times their slab strides (trailing `*_ps`
// arguments, elements). `hyper` is null (lone model: lr, momentum, weight_decay as given) or holds
// (lr, momentum, weight_decay) of each model as 3P floats.

extern "C" __global__ void sgd_momentum(float* __restrict__ param, const float* __restrict__ grad,
                                        float* __restrict__ vel, long long n, float lr, float momentum,
                                        float weight_decay, const float* __restrict__ hyper, long long param_ps,
                                        long long grad_ps, long long vel_ps) {
    const long long model = blockIdx.y;
    param += model * param_ps;
    grad += model * grad_ps;
    vel += model * vel_ps;
    if (hyper) {
        lr = hyper[3 * model];
        momentum = hyper[3 * model + 1];
        weight_decay = hyper[3 * model + 2];
    }
    GRID_STRIDE(i, n) {
        float v = momentum * vel[i] - lr * (grad[i] + weight_decay * param[i]);
        vel[i] = v;
        param[i] += v;
    }
}
