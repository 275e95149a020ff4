// kv_write: copies each row's new key and value into the KV cache of one
// layer: k_cache[slot, pos] = k[m] and v_cache[slot, pos] = v[m], where
// (slot, pos) = (rows[2m], rows[2m + 1]).
//
// Bindings (group 0):
//   0 uniform    params   KvWriteParams
//   1 read       k        f32 [M, G, D]
//   2 read       v        f32 [M, G, D]
//   3 read       rows     u32 [M, 2] (slot, position)
//   4 read_write k_cache  f32 [S, T, G, D] (S slots, T = params.max_len)
//   5 read_write v_cache  f32 [S, T, G, D]
// Workgroup: 256 threads, one thread per element of a row's G * D values.
// Dispatch: (ceil(G * D / 256), min(M, 65535), ceil(M / 65535)); the row
// is wid.y + wid.z * num_workgroups.y.

struct KvWriteParams {
    m: u32,
    kv_heads: u32,
    head_dim: u32,
    max_len: u32,
}

@group(0) @binding(0) var<uniform> params: KvWriteParams;
@group(0) @binding(1) var<storage, read> k: array<f32>;
@group(0) @binding(2) var<storage, read> v: array<f32>;
@group(0) @binding(3) var<storage, read> rows: array<u32>;
@group(0) @binding(4) var<storage, read_write> k_cache: array<f32>;
@group(0) @binding(5) var<storage, read_write> v_cache: array<f32>;

@compute @workgroup_size(256)
fn kv_write(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let width = params.kv_heads * params.head_dim;
    let row = gid.y + gid.z * groups.y;
    let i = gid.x;
    if i >= width || row >= params.m {
        return;
    }
    let slot = rows[2u * row];
    let pos = rows[2u * row + 1u];
    let src = row * width + i;
    let dst = (slot * params.max_len + pos) * width + i;
    k_cache[dst] = k[src];
    v_cache[dst] = v[src];
}
