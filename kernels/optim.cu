// optim.cu: momentum SGD over all elements of one parameter tensor.
//   vel = momentum vel - lr (grad + weight_decay param); param += vel
// Shapes: any (flat, n elements). Reference: Cpu::sgd_momentum (src/backend/cpu.rs).
// sgd_momentum_multi: the same update of every parameter tensor of a model in one launch (grid =
// (blocks, tensors, P): tensor t = blockIdx.y, model p = blockIdx.z); `table` holds for each
// tensor 7 u64: param, grad and vel addresses, n, and the three slab strides (elements).
// Reference: Backend::sgd_momentum_all's default (one sgd_momentum per tensor).
//
// Packed models (Backend::models() = P; reference src/backend/packed.rs): grid = (blocks, P),
// model p = blockIdx.y; param, grad, vel move by p times their slab strides (trailing `*_ps`
// arguments, elements). `hyper` is null (lone model: lr, momentum, weight_decay as given) or holds
// (lr, momentum, weight_decay) of each model as 3P floats.

__device__ __forceinline__ void sgd_momentum_body(float* __restrict__ param, const float* __restrict__ grad,
                                                  float* __restrict__ vel, long long n, float lr, float momentum,
                                                  float weight_decay) {
    GRID_STRIDE(i, n) {
        float v = momentum * vel[i] - lr * (grad[i] + weight_decay * param[i]);
        vel[i] = v;
        param[i] += v;
    }
}

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
    sgd_momentum_body(param, grad, vel, n, lr, momentum, weight_decay);
}

extern "C" __global__ void sgd_momentum_multi(const unsigned long long* __restrict__ table, float lr, float momentum,
                                              float weight_decay, const float* __restrict__ hyper) {
    const long long model = blockIdx.z;
    const unsigned long long* t = table + 7 * (long long)blockIdx.y;
    float* param = (float*)t[0] + model * (long long)t[4];
    const float* grad = (const float*)t[1] + model * (long long)t[5];
    float* vel = (float*)t[2] + model * (long long)t[6];
    if (hyper) {
        lr = hyper[3 * model];
        momentum = hyper[3 * model + 1];
        weight_decay = hyper[3 * model + 2];
    }
    sgd_momentum_body(param, grad, vel, (long long)t[3], lr, momentum, weight_decay);
}
