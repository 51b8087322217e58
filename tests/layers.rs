//! The library's layers point one way: every module imports only modules of lower layers (or
//! its own), and no two sibling submodules import each other. Read from the sources, so a
//! new back edge fails here, not in a later split into crates.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Top-level modules by layer, lowest first (src/lib.rs's crate docs say the same).
const LAYERS: &[&[&str]] = &[
    &["ops", "rng", "error", "metrics"],
    &["reference"],
    &["cpu"],
    &["shaders"],
    &["device"],
    &["tensor"],
    &["testing"],
    &["kernels"],
    &["tune"],
    &["model"],
    &["engine"],
    &["bench"],
];

fn rank(module: &str) -> usize {
    LAYERS
        .iter()
        .position(|l| l.contains(&module))
        .unwrap_or_else(|| panic!("module `{module}` has no layer in tests/layers.rs"))
}

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The module path of a source file: `src/model/gpu.rs` -> ["model", "gpu"].
fn module_path(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = rel.iter().map(|c| c.to_string_lossy().into_owned()).collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    parts
}

/// Code without comments (doc links name modules they do not import).
fn code(text: &str) -> String {
    text.lines().map(|l| l.find("//").map_or(l, |i| &l[..i])).collect::<Vec<_>>().join("\n")
}

fn ident(s: &str) -> String {
    s.trim_start().chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect()
}

/// The paths after `prefix::`: one (`a::b`), or each of a group (`{a::b, c}`), as (first
/// segment, second segment if any).
fn paths_after(text: &str, prefix: &str) -> Vec<(String, Option<String>)> {
    let mut out = Vec::new();
    for (i, _) in text.match_indices(prefix) {
        if i > 0 && text[..i].ends_with(|c: char| c.is_alphanumeric() || c == '_' || c == ':' || c == '$') {
            continue; // `$crate::`, `resformer_crate::`, `a::super::`
        }
        let rest = &text[i + prefix.len()..];
        let items: Vec<&str> = match rest.strip_prefix('{') {
            Some(group) => {
                let (mut depth, mut end) = (1, group.len());
                for (j, c) in group.char_indices() {
                    depth += match c {
                        '{' => 1,
                        '}' => -1,
                        _ => 0,
                    };
                    if depth == 0 {
                        end = j;
                        break;
                    }
                }
                // top-level items of the group only: `a::{b, c}` counts as `a`
                let mut items = Vec::new();
                let (mut d, mut start) = (0, 0);
                let g = &group[..end];
                for (j, c) in g.char_indices() {
                    match c {
                        '{' => d += 1,
                        '}' => d -= 1,
                        ',' if d == 0 => {
                            items.push(&g[start..j]);
                            start = j + 1;
                        }
                        _ => {}
                    }
                }
                items.push(&g[start..]);
                items
            }
            None => vec![rest],
        };
        for item in items {
            let first = ident(item);
            if first.is_empty() {
                continue;
            }
            let after = item.trim_start()[first.len()..].strip_prefix("::").map(ident).filter(|s| !s.is_empty());
            out.push((first, after));
        }
    }
    out
}

/// `crate::a::b` and `super::b` paths in `text`, resolved against `module`, each as
/// (top-level module, its submodule if any).
fn imports(module: &[String], text: &str) -> BTreeSet<(String, Option<String>)> {
    let mut out: BTreeSet<(String, Option<String>)> = paths_after(text, "crate::").into_iter().collect();
    // super:: from a submodule names a sibling (or the parent's own items)
    if module.len() == 2 {
        for (sib, _) in paths_after(text, "super::") {
            out.insert((module[0].clone(), Some(sib)));
        }
    }
    out
}

#[test]
fn every_module_imports_only_lower_layers_and_no_siblings_import_each_other() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut wrong = Vec::new();
    // sibling edges within one top-level module: (top, from) -> {to}
    let mut siblings: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    let mut submodules: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in &files {
        let module = module_path(&src, f);
        if module == ["lib"] {
            continue;
        }
        if module.len() >= 2 {
            submodules.entry(module[0].clone()).or_default().insert(module[1].clone());
        }
        let text = code(&std::fs::read_to_string(f).unwrap());
        for (top, sub) in imports(&module, &text) {
            if top == module[0] {
                if let (Some(from), Some(to)) = (module.get(1), sub) {
                    if *from != to {
                        siblings.entry((top, from.clone())).or_default().insert(to);
                    }
                }
                continue;
            }
            if ["Error", "Result", "DType", "Gpu", "Tensor"].contains(&top.as_str()) {
                continue; // the crate root's re-exports of lower layers
            }
            if rank(&top) >= rank(&module[0]) {
                wrong.push(format!(
                    "{} imports {top} (layer {} >= {})",
                    module.join("::"),
                    rank(&top),
                    rank(&module[0])
                ));
            }
        }
    }
    for ((top, from), tos) in &siblings {
        for to in tos {
            let is_module = submodules.get(top).is_some_and(|s| s.contains(to));
            if is_module && siblings.get(&(top.clone(), to.clone())).is_some_and(|back| back.contains(from)) {
                wrong.push(format!("{top}::{from} and {top}::{to} import each other"));
            }
        }
    }
    assert!(wrong.is_empty(), "imports against the layers:\n  {}", wrong.join("\n  "));
}

#[test]
fn the_checker_sees_a_back_edge() {
    // the test above must be able to fail: a kernel importing the tuner is caught
    let found = imports(
        &["kernels".into(), "matmul".into()],
        &code("use crate::tune::matmul_variant; // crate::engine\nuse crate::{model::Stack, bench};"),
    );
    assert!(found.contains(&("tune".into(), Some("matmul_variant".into()))));
    assert!(found.contains(&("model".into(), Some("Stack".into()))) && found.contains(&("bench".into(), None)));
    assert!(!found.iter().any(|(t, _)| t == "engine"), "comments do not count");
    assert!(rank("tune") > rank("kernels"));
}
