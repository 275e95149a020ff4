// adamw: one AdamW step (Loshchilov and Hutter, 2019, "Decoupled Weight
// Decay Regularization") with gradient clipping by global norm, per
// element i:
//   g    = grad[i] * clip, clip = min(1, max_norm / (sqrt(sq_norm) + 1e-6))
//          (clip = 1 when max_norm <= 0)
//   m    = beta1 * m + (1 - beta1) * g
//   v    = beta2 * v + (1 - beta2) * g^2
//   p    = p * (1 - lr * weight_decay)
//   p    = p - lr * (m / bias1) / (sqrt(v / bias2) + eps)
// where bias1 = 1 - beta1^t and bias2 = 1 - beta2^t for step t, as in
// PyTorch's torch.optim.AdamW.
//
// Bindings (group 0):
//   0 uniform    params   AdamWParams
//   1 read_write param    f32 [N] (N = params.n)
//   2 read       grad     f32 [N]
//   3 read_write m        f32 [N]: first moment
//   4 read_write v        f32 [N]: second moment
//   5 read       sq_norm  f32 [1]: output of grad_norm.wgsl
// Workgroup: 256 threads, one element each.
// Dispatch: ceil(N / 256) workgroups split over (x, y), x <= 65535; the flat
// workgroup index is wid.x + wid.y * num_workgroups.x.

struct AdamWParams {
    n: u32,
    lr: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    weight_decay: f32,
    bias1: f32,
    bias2: f32,
    max_norm: f32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> params: AdamWParams;
@group(0) @binding(1) var<storage, read_write> param: array<f32>;
@group(0) @binding(2) var<storage, read> grad: array<f32>;
@group(0) @binding(3) var<storage, read_write> m: array<f32>;
@group(0) @binding(4) var<storage, read_write> v: array<f32>;
@group(0) @binding(5) var<storage, read> sq_norm: array<f32>;

@compute @workgroup_size(256)
fn adamw(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = (wid.x + wid.y * groups.x) * 256u + lid;
    if i >= params.n {
        return;
    }
    var clip = 1.0;
    if params.max_norm > 0.0 {
        clip = min(1.0, params.max_norm / (sqrt(sq_norm[0]) + 1e-6));
    }
    let g = grad[i] * clip;
    let m_new = params.beta1 * m[i] + (1.0 - params.beta1) * g;
    let v_new = params.beta2 * v[i] + (1.0 - params.beta2) * g * g;
    m[i] = m_new;
    v[i] = v_new;
    var p = param[i] * (1.0 - params.lr * params.weight_decay);
    p -= params.lr * (m_new / params.bias1) / (sqrt(v_new / params.bias2) + params.eps);
    param[i] = p;
}
