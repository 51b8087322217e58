//! Malformed weight and input files and bad configurations: each ends in an error that
//! names the tensor or argument and what was expected; never a panic. (The command line's
//! one-line errors are tested in crates/resformer-cli/tests/cli.rs.)

use std::path::PathBuf;

use resformer::model::io::{write_f32, TensorFile};
use resformer::model::{BlockConfig, StackWeights};
use resformer::Error;

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("resformer-bad-files-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// A valid 2-block file (E 8, F 16) as bytes. Each call writes a file of its own: the tests
/// run on parallel threads, and one reading a shared file while another rewrites it read 0
/// bytes (a CI failure of truncated_file_is_an_error).
fn good_weights() -> Vec<u8> {
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = CALLS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let p = tmp(&format!("good-{n}.safetensors"));
    StackWeights::random(1, 2, 8, 16).save(&p, "").unwrap();
    std::fs::read(p).unwrap()
}

fn load_err(name: &str, bytes: Vec<u8>) -> String {
    match TensorFile::from_bytes(name, bytes).and_then(|f| StackWeights::from_file(&f, "")) {
        Ok(_) => panic!("{name}: loaded"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn a_good_file_round_trips() {
    let p = tmp("roundtrip.safetensors");
    let w = StackWeights::random(2, 3, 8, 12);
    w.save(&p, "blocks.").unwrap();
    assert_eq!(StackWeights::load(&p, "blocks.").unwrap(), w);
    let e = StackWeights::load(&p, "").unwrap_err().to_string();
    assert!(e.contains("missing tensor `0.attn.out_proj.weight`") && e.contains("is the prefix right?"), "{e}");
}

#[test]
fn missing_tensor_is_named() {
    let p = tmp("missing.safetensors");
    let w = StackWeights::random(1, 1, 4, 8);
    let b = &w.blocks[0];
    // everything but norm2.bias
    let names = resformer::model::weights::block_tensor_names(4, 8);
    let t: Vec<(String, Vec<usize>, &Vec<f32>)> =
        names.iter().zip(b.tensors()).take(11).map(|((n, s), d)| (format!("0.{n}"), s.clone(), d)).collect();
    let refs: Vec<(&str, &[usize], &[f32])> =
        t.iter().map(|(n, s, d)| (n.as_str(), s.as_slice(), d.as_slice())).collect();
    write_f32(&p, &refs).unwrap();
    let e = StackWeights::load(&p, "").unwrap_err().to_string();
    assert!(e.contains("missing tensor `0.norm2.bias`"), "{e}");
}

#[test]
fn wrong_shape_names_expected_and_found() {
    let p = tmp("shape.safetensors");
    let w = StackWeights::random(1, 1, 4, 8);
    let names = resformer::model::weights::block_tensor_names(4, 8);
    let mut t: Vec<(String, Vec<usize>, Vec<f32>)> =
        names.iter().zip(w.blocks[0].tensors()).map(|((n, s), d)| (format!("0.{n}"), s.clone(), d.clone())).collect();
    t[1] = ("0.attn.in_proj_bias".into(), vec![11], vec![0.0; 11]);
    let refs: Vec<(&str, &[usize], &[f32])> =
        t.iter().map(|(n, s, d)| (n.as_str(), s.as_slice(), d.as_slice())).collect();
    write_f32(&p, &refs).unwrap();
    let e = StackWeights::load(&p, "").unwrap_err().to_string();
    assert!(e.contains("`0.attn.in_proj_bias` expected shape [12], found [11]"), "{e}");
}

#[test]
fn unsupported_dtype_is_an_error() {
    // rewrite the header's first F32 to I32: same byte size, not a float
    let bytes = good_weights();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header = String::from_utf8(bytes[8..8 + n].to_vec()).unwrap();
    let patched = header.replacen("\"F32\"", "\"I32\"", 1);
    let mut out = bytes[..8].to_vec();
    out.extend(patched.as_bytes());
    out.extend(&bytes[8 + n..]);
    let e = load_err("i32.safetensors", out);
    assert!(e.contains("dtype I32") && e.contains("expected a float"), "{e}");
}

#[test]
fn truncated_file_is_an_error() {
    let bytes = good_weights();
    for keep in [0, 4, 8, 20, bytes.len() / 2, bytes.len() - 1] {
        let e = load_err("truncated.safetensors", bytes[..keep].to_vec());
        assert!(e.contains("truncated.safetensors") && e.contains("not a valid safetensors file"), "{keep}: {e}");
    }
}

#[test]
fn garbage_and_absurd_header_lengths_are_errors() {
    let e = load_err("garbage.safetensors", b"this is not a tensor file at all, just text".to_vec());
    assert!(e.contains("not a valid safetensors file"), "{e}");
    let mut absurd = u64::MAX.to_le_bytes().to_vec();
    absurd.extend(b"{}");
    let e = load_err("absurd.safetensors", absurd);
    assert!(e.contains("not a valid safetensors file"), "{e}");
    let mut big = (1u64 << 40).to_le_bytes().to_vec();
    big.extend(b"{\"a\":1}");
    let e = load_err("big.safetensors", big);
    assert!(e.contains("not a valid safetensors file"), "{e}");
}

#[test]
fn f16_bf16_and_f64_weights_convert_to_f32() {
    use safetensors::{tensor::TensorView, Dtype};
    let f16_one = 0x3c00u16.to_le_bytes();
    let bf16_two = 0x4000u16.to_le_bytes();
    let f64_half = 0.5f64.to_le_bytes();
    let p = tmp("dtypes.safetensors");
    let views = vec![
        ("a", TensorView::new(Dtype::F16, vec![1], &f16_one).unwrap()),
        ("b", TensorView::new(Dtype::BF16, vec![1], &bf16_two).unwrap()),
        ("c", TensorView::new(Dtype::F64, vec![1], &f64_half).unwrap()),
    ];
    safetensors::serialize_to_file(views, None, &p).unwrap();
    let f = TensorFile::open(&p).unwrap();
    assert_eq!(
        [f.get("a").unwrap().data[0], f.get("b").unwrap().data[0], f.get("c").unwrap().data[0]],
        [1.0, 2.0, 0.5]
    );
    assert_eq!(f.converted_dtypes(), vec!["BF16", "F16", "F64"]);
}

#[test]
fn heads_that_do_not_divide_embed_or_zero_heads_are_errors() {
    let e = BlockConfig::new(30, 4, 8).validate().unwrap_err();
    assert!(
        matches!(e, Error::InvalidArgument { .. }) && e.to_string().contains("heads 4 do not divide embed 30"),
        "{e}"
    );
    let e = BlockConfig::new(30, 0, 8).validate().unwrap_err();
    assert!(e.to_string().contains("heads must be at least 1"), "{e}");
}

#[test]
fn a_key_padding_mask_reads_as_bool_u8_i64_or_f32_with_nonzero_padded() {
    use safetensors::tensor::{serialize, Dtype, TensorView};
    let want: Vec<u32> = vec![0, 0, 1, 1, 0, 1];
    let bools: Vec<u8> = want.iter().map(|&v| v as u8).collect();
    let i64s: Vec<u8> = want.iter().flat_map(|&v| (v as i64 * 7).to_le_bytes()).collect();
    let f32s: Vec<u8> = want.iter().flat_map(|&v| if v == 1 { 1.0f32 } else { -0.0f32 }.to_le_bytes()).collect();
    for (dtype, bytes) in [(Dtype::BOOL, &bools), (Dtype::U8, &bools), (Dtype::I64, &i64s), (Dtype::F32, &f32s)] {
        let view = TensorView::new(dtype, vec![2, 3], bytes).unwrap();
        let file = TensorFile::from_bytes("mask.safetensors", serialize([("m", view)], None).unwrap()).unwrap();
        assert_eq!(file.get_mask("m", &[2, 3]).unwrap(), want, "{dtype:?}");
        let e = file.get_mask("m", &[3, 2]).unwrap_err().to_string();
        assert!(e.contains("expected shape [3, 2], found [2, 3]"), "{e}");
    }
}
