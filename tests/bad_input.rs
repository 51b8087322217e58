//! Bad input to every op returns a typed error that names the op and the
//! shapes; nothing panics and nothing is dispatched.

use resformer::kernels::attention::{attention, prepare_attention_variant, AttentionConfig, AttentionVariant};
use resformer::kernels::layernorm::layernorm;
use resformer::kernels::matmul::{matmul, Activation};
use resformer::kernels::residual_add::residual_add;
use resformer::testing::{gpu_with, shared_gpu};
use resformer::{DType, Error, Gpu, GpuOptions, Tensor};

fn t(gpu: &Gpu, shape: &[usize]) -> Tensor {
    Tensor::empty(gpu, shape, DType::F32).unwrap()
}

fn message(e: &Error) -> String {
    e.to_string()
}

#[test]
fn matmul_rejects_mismatched_k() {
    let Some(gpu) = shared_gpu() else { return };
    let mut enc = gpu.encoder("bad");
    let e = matmul(gpu, &mut enc, &t(gpu, &[4, 8]), &t(gpu, &[5, 9]), None, Activation::None, &t(gpu, &[4, 5]))
        .unwrap_err();
    assert!(matches!(e, Error::ShapeMismatch { op: "matmul", .. }), "{e:?}");
    let m = message(&e);
    assert!(m.contains("matmul") && m.contains("[5, 8]") && m.contains("[5, 9]"), "{m}");
}

#[test]
fn matmul_rejects_wrong_output_and_bias() {
    let Some(gpu) = shared_gpu() else { return };
    let (x, w) = (t(gpu, &[4, 8]), t(gpu, &[5, 8]));
    let mut enc = gpu.encoder("bad");
    let e = matmul(gpu, &mut enc, &x, &w, None, Activation::None, &t(gpu, &[4, 6])).unwrap_err();
    assert!(message(&e).contains("out expected shape [4, 5], got [4, 6]"), "{e}");
    let e = matmul(gpu, &mut enc, &x, &w, Some(&t(gpu, &[4])), Activation::None, &t(gpu, &[4, 5])).unwrap_err();
    assert!(message(&e).contains("bias expected shape [5], got [4]"), "{e}");
}

#[test]
fn attention_rejects_qkv_of_wrong_width() {
    let Some(gpu) = shared_gpu() else { return };
    let cfg = AttentionConfig { batch: 2, seq: 3, heads: 2, head_dim: 4, batch_first: false, causal: false };
    let mut enc = gpu.encoder("bad");
    let e = attention(gpu, &mut enc, &t(gpu, &[6, 8]), None, &cfg, &t(gpu, &[6, 8])).unwrap_err();
    assert!(matches!(e, Error::ShapeMismatch { op: "attention", .. }), "{e:?}");
    assert!(message(&e).contains("expected shape [6, 24], got [6, 8]"), "{e}");
}

#[test]
fn attention_rejects_key_pad_of_wrong_shape_and_dtype() {
    let Some(gpu) = shared_gpu() else { return };
    let cfg = AttentionConfig { batch: 2, seq: 3, heads: 1, head_dim: 4, batch_first: false, causal: false };
    let (qkv, out) = (t(gpu, &[6, 12]), t(gpu, &[6, 4]));
    let mut enc = gpu.encoder("bad");
    let pad = Tensor::from_u32(gpu, &[3, 2], &[0; 6]).unwrap();
    let e = attention(gpu, &mut enc, &qkv, Some(&pad), &cfg, &out).unwrap_err();
    assert!(message(&e).contains("key_pad (batch, seq) expected shape [2, 3], got [3, 2]"), "{e}");
    let e = attention(gpu, &mut enc, &qkv, Some(&t(gpu, &[2, 3])), &cfg, &out).unwrap_err();
    assert!(message(&e).contains("key_pad must be U32"), "{e}");
}

#[test]
fn attention_rejects_head_dim_over_the_kernel_maximum() {
    let Some(gpu) = shared_gpu() else { return };
    let cfg = AttentionConfig { batch: 1, seq: 2, heads: 1, head_dim: 129, batch_first: false, causal: false };
    let mut enc = gpu.encoder("bad");
    let e = attention(gpu, &mut enc, &t(gpu, &[2, 387]), None, &cfg, &t(gpu, &[2, 129])).unwrap_err();
    assert!(matches!(e, Error::InvalidArgument { op: "attention", .. }) && message(&e).contains("129"), "{e:?}");
}

#[test]
fn layernorm_rejects_gamma_of_wrong_length() {
    let Some(gpu) = shared_gpu() else { return };
    let mut enc = gpu.encoder("bad");
    let e = layernorm(gpu, &mut enc, &t(gpu, &[3, 7]), None, &t(gpu, &[6]), &t(gpu, &[7]), 1e-5, &t(gpu, &[3, 7]))
        .unwrap_err();
    assert!(matches!(e, Error::ShapeMismatch { op: "layernorm", what: "gamma", .. }), "{e:?}");
    assert!(message(&e).contains("[7]") && message(&e).contains("[6]"), "{e}");
}

#[test]
fn layernorm_rejects_residual_of_wrong_shape_and_bad_eps() {
    let Some(gpu) = shared_gpu() else { return };
    let (x, g, b, o) = (t(gpu, &[3, 7]), t(gpu, &[7]), t(gpu, &[7]), t(gpu, &[3, 7]));
    let mut enc = gpu.encoder("bad");
    let e = layernorm(gpu, &mut enc, &x, Some(&t(gpu, &[7, 3])), &g, &b, 1e-5, &o).unwrap_err();
    assert!(message(&e).contains("layernorm: residual expected shape [3, 7], got [7, 3]"), "{e}");
    let e = layernorm(gpu, &mut enc, &x, None, &g, &b, f32::NAN, &o).unwrap_err();
    assert!(matches!(e, Error::InvalidArgument { op: "layernorm", .. }), "{e:?}");
}

#[test]
fn residual_add_rejects_mismatched_lengths() {
    let Some(gpu) = shared_gpu() else { return };
    let mut enc = gpu.encoder("bad");
    let e = residual_add(gpu, &mut enc, &t(gpu, &[10]), &t(gpu, &[11]), &t(gpu, &[10])).unwrap_err();
    assert!(message(&e).contains("residual_add: b expected shape [10], got [11]"), "{e}");
}

#[test]
fn zero_sized_dimensions_are_rejected_by_every_op() {
    let Some(gpu) = shared_gpu() else { return };
    let mut enc = gpu.encoder("bad");
    let e = matmul(gpu, &mut enc, &t(gpu, &[0, 8]), &t(gpu, &[5, 8]), None, Activation::None, &t(gpu, &[0, 5]))
        .unwrap_err();
    assert!(matches!(e, Error::ZeroSized { op: "matmul", what: "x", .. }), "{e:?}");
    assert!(message(&e).contains("[0, 8]"), "{e}");
    let e = residual_add(gpu, &mut enc, &t(gpu, &[0]), &t(gpu, &[0]), &t(gpu, &[0])).unwrap_err();
    assert!(matches!(e, Error::ZeroSized { op: "residual_add", .. }), "{e:?}");
    let e = layernorm(gpu, &mut enc, &t(gpu, &[3, 0]), None, &t(gpu, &[0]), &t(gpu, &[0]), 1e-5, &t(gpu, &[3, 0]))
        .unwrap_err();
    assert!(matches!(e, Error::ZeroSized { op: "layernorm", .. }), "{e:?}");
    let cfg = AttentionConfig { batch: 1, seq: 4, heads: 0, head_dim: 8, batch_first: false, causal: false };
    let e = attention(gpu, &mut enc, &t(gpu, &[4, 24]), None, &cfg, &t(gpu, &[4, 8])).unwrap_err();
    assert!(matches!(e, Error::ZeroSized { op: "attention", what: "heads", .. }), "{e:?}");
}

/// A device whose storage bindings are capped at 64 KiB: 16384 f32.
fn small_binding_gpu() -> Option<Gpu> {
    gpu_with(GpuOptions { adjust_limits: Some(|l| l.max_storage_buffer_binding_size = 64 << 10), ..Default::default() })
}

#[test]
fn a_buffer_over_the_binding_limit_is_rejected_with_op_and_shape() {
    let Some(gpu) = small_binding_gpu() else { return };
    assert_eq!(gpu.limits().max_storage_buffer_binding_size, 64 << 10);
    let big = t(&gpu, &[129, 128]); // 66048 bytes
    let mut enc = gpu.encoder("bad");
    let e = residual_add(&gpu, &mut enc, &big, &big, &t(&gpu, &[129, 128])).unwrap_err();
    match &e {
        Error::LimitExceeded { op, shape, needed, limit, .. } => {
            assert_eq!((*op, shape.as_slice(), *needed, *limit), ("residual_add", &[129usize, 128][..], 66048, 65536));
        }
        other => panic!("expected LimitExceeded, got {other:?}"),
    }
    assert!(message(&e).contains("max_storage_buffer_binding_size"), "{e}");
    let e = matmul(&gpu, &mut enc, &big, &t(&gpu, &[4, 128]), None, Activation::None, &t(&gpu, &[129, 4])).unwrap_err();
    assert!(matches!(e, Error::LimitExceeded { op: "matmul", what: "x", .. }), "{e:?}");
    // one element under the limit still runs
    let ok = t(&gpu, &[128, 128]);
    residual_add(&gpu, &mut enc, &ok, &ok, &t(&gpu, &[128, 128])).unwrap();
}

#[test]
fn data_of_the_wrong_length_is_rejected_on_upload() {
    let Some(gpu) = shared_gpu() else { return };
    let e = Tensor::from_f32(gpu, &[2, 3], &[1.0; 5]).unwrap_err();
    assert!(matches!(e, Error::DataLength { len: 5, expected: 6, .. }), "{e:?}");
}

#[test]
fn a_kernel_over_the_workgroup_memory_limit_is_refused_with_the_limit() {
    let Some(gpu) = gpu_with(GpuOptions {
        adjust_limits: Some(|l| l.max_compute_workgroup_storage_size = 8192),
        ..Default::default()
    }) else {
        return;
    };
    let cfg = AttentionConfig { batch: 1, seq: 4, heads: 1, head_dim: 8, batch_first: false, causal: false };
    let mut enc = gpu.encoder("bad");
    // the tiled kernel's K and V tiles (the subgroup variant, chosen on lavapipe, has none)
    let (qkv, out) = (t(&gpu, &[4, 24]), t(&gpu, &[4, 8]));
    let e = prepare_attention_variant(&gpu, AttentionVariant::Tiled, &qkv, None, &cfg, &out).err().unwrap();
    match &e {
        Error::LimitExceeded { op: "attention", needed: 16384, limit: 8192, limit_name, .. } => {
            assert_eq!(*limit_name, "max_compute_workgroup_storage_size")
        }
        other => panic!("expected LimitExceeded, got {other:?}"),
    }
    // a matmul still runs: the variants over the limit drop out of the available list
    matmul(&gpu, &mut enc, &t(&gpu, &[4, 8]), &t(&gpu, &[5, 8]), None, Activation::None, &t(&gpu, &[4, 5])).unwrap();
}
