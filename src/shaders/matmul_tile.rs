//! The register-tiled matmul family: one generator, many tile shapes.
//!
//! [`MatmulTile`] holds every number of one configuration; [`MatmulTile::wgsl`]
//! writes the kernel from them, with the register block's loops written out so
//! that no private array is indexed by a runtime value (each accumulator is a
//! named `vec4<f32>`). The host's dispatch size, the parity tests (which loop
//! over [`MatmulTile::FAMILY`]) and the tuner's candidates all read these values.

use std::fmt::Write;

/// One configuration of the tiled matmul: a workgroup computes a BM x BN block
/// of `out`, staging BK-deep slabs of x and w through workgroup memory; each
/// invocation owns a TM x TN register block (rows and columns contiguous).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MatmulTile {
    /// Rows of `out` per workgroup.
    pub bm: u32,
    /// Columns of `out` per workgroup.
    pub bn: u32,
    /// Depth of one staged slab of k.
    pub bk: u32,
    /// Rows per invocation (a multiple of 4).
    pub tm: u32,
    /// Columns per invocation (a multiple of 4).
    pub tn: u32,
}

/// The staged operands are read four k (global) or four rows (workgroup) at a time.
const V: u32 = 4;

impl MatmulTile {
    /// Every configuration the engine may run: the tuner's candidates, each one tested.
    /// 64x64x16/4x4 is the pre-family kernel's shape; the 128-wide ones are what an
    /// H200 experiment found best at 1024³ (128x64x16) and 4096³ (128x128x8).
    pub const FAMILY: [MatmulTile; 6] = [
        MatmulTile { bm: 64, bn: 64, bk: 16, tm: 4, tn: 4 },
        MatmulTile { bm: 64, bn: 64, bk: 16, tm: 8, tn: 4 },
        MatmulTile { bm: 128, bn: 64, bk: 16, tm: 8, tn: 4 },
        MatmulTile { bm: 128, bn: 128, bk: 8, tm: 8, tn: 8 },
        MatmulTile { bm: 128, bn: 128, bk: 16, tm: 8, tn: 8 },
        MatmulTile { bm: 64, bn: 128, bk: 16, tm: 4, tn: 8 },
    ];

    /// The configuration used when nothing was tuned: the best all-round one in the
    /// H200 experiment (100% of cuBLAS at 1024³, 69% at 4096³ there).
    pub const DEFAULT: MatmulTile = MatmulTile { bm: 128, bn: 64, bk: 16, tm: 8, tn: 4 };

    /// Invocations along x (columns) and y (rows) of one workgroup.
    pub fn workgroup(&self) -> (u32, u32) {
        (self.bn / self.tn, self.bm / self.tm)
    }

    /// Invocations per workgroup.
    pub fn threads(&self) -> u32 {
        let (x, y) = self.workgroup();
        x * y
    }

    /// vec4 slots per k-row of the staged x and w slabs, one of padding each, so that the
    /// transposed stores of neighbouring k land in different banks.
    fn strides(&self) -> (u32, u32) {
        (self.bm / V + 1, self.bn / V + 1)
    }

    /// Bytes of workgroup memory the kernel declares.
    pub fn workgroup_bytes(&self) -> u64 {
        let (xs, ws) = self.strides();
        (self.bk * (xs + ws) * 16) as u64
    }

    /// Why this configuration cannot be generated, if it cannot.
    pub fn check(&self) -> Result<(), String> {
        let MatmulTile { bm, bn, bk, tm, tn } = *self;
        if tm == 0 || tn == 0 || tm % V != 0 || tn % V != 0 {
            return Err(format!("{self}: tm and tn must be non-zero multiples of {V}"));
        }
        if bm % tm != 0 || bn % tn != 0 || bk == 0 || bk % V != 0 {
            return Err(format!("{self}: bm, bn must be multiples of tm, tn and bk of {V}"));
        }
        let t = self.threads();
        if !(bm * bk / V).is_multiple_of(t) || !(bn * bk / V).is_multiple_of(t) {
            return Err(format!("{self}: the {t} invocations must share the slabs' vec4s evenly"));
        }
        Ok(())
    }

    /// Short name for tables, caches and env values: `128x64x16/8x4`.
    pub fn name(&self) -> String {
        self.to_string()
    }

    /// Parses [`MatmulTile::name`]'s form.
    pub fn parse(s: &str) -> Option<MatmulTile> {
        let (block, reg) = s.split_once('/')?;
        let b: Vec<u32> = block.split('x').map(|v| v.parse().ok()).collect::<Option<_>>()?;
        let r: Vec<u32> = reg.split('x').map(|v| v.parse().ok()).collect::<Option<_>>()?;
        match (&b[..], &r[..]) {
            (&[bm, bn, bk], &[tm, tn]) => {
                let t = MatmulTile { bm, bn, bk, tm, tn };
                t.check().ok().map(|_| t)
            }
            _ => None,
        }
    }

    /// The kernel's WGSL, without the shared Params / bias / out / activate() of
    /// shaders/matmul_io.wgsl, which src/kernels/matmul.rs appends. With `vec4_loads`, x and w are
    /// bound as `array<vec4<…>>` and K must be a multiple of 4; without, they are read
    /// as scalars and any K works. With `w_f16`, w is f16 (the f16 mode's weights; the module
    /// then needs `enable f16;`, which src/kernels/matmul.rs prepends), widened to f32 as it is loaded.
    pub fn wgsl(&self, vec4_loads: bool, w_f16: bool) -> String {
        self.check().expect("only checked tiles are generated");
        let MatmulTile { bm, bn, bk, tm, tn } = *self;
        let (wgx, wgy) = self.workgroup();
        let threads = self.threads();
        let (xs4, ws4) = self.strides();
        let (tm4, tn4) = (tm / V, tn / V);
        let (lx, lw) = (bm * bk / V / threads, bn * bk / V / threads);
        let mut s = String::new();
        let w = &mut s;
        let elem = if vec4_loads { "vec4<f32>" } else { "f32" };
        let w_elem = match (vec4_loads, w_f16) {
            (true, true) => "vec4<f16>",
            (false, true) => "f16",
            _ => elem,
        };
        let _ = writeln!(
            w,
            "// matmul {self} ({}): out[b, m, n] = act(sum_k x[b, m, k] * w[b, n, k] + bias[n])  (nn.Linear, w (N, K))",
            if vec4_loads { "vec4 loads, K % 4 == 0" } else { "scalar loads, any K" }
        );
        let _ = writeln!(
            w,
            "// bindings: 0 x (batch, M, K) | 1 w (N, K), or (batch, N, K) when w_batch_stride = N*K | 2 bias (N)\n\
             //           3 out (batch, M, N) read_write | 4 params   (generated by src/shaders/matmul_tile.rs)\n\
             // dispatch: (ceil(N / BN), ceil(M / BM), batch) workgroups of WGX x WGY; invocation (tx, ty) owns\n\
             //   rows ty*TM.. and columns tx*TN.. of the block, accumulated in named vec4 registers\n\
             // per BK-deep tile: the prefetched slabs are stored k-major (xs[k][m], ws[k][n], rows padded by\n\
             //   one vec4), then the next tile's loads are issued into registers while this one is multiplied\n\
             // loops: every loop runs to a bound fixed before it starts (tile counts from params); the\n\
             //   register block is written out. Ragged edges load zeros and skip their stores: any M, N, K >= 1."
        );
        let _ = writeln!(w, "const BM: u32 = {bm}u;\nconst BN: u32 = {bn}u;\nconst BK: u32 = {bk}u;");
        let _ = writeln!(w, "const WGX: u32 = {wgx}u;\nconst WGY: u32 = {wgy}u;\nconst THREADS: u32 = {threads}u;");
        let _ = writeln!(w, "const XS4: u32 = {xs4}u;   // vec4 slots per k-row of xs (BM / 4 + 1 pad)");
        let _ = writeln!(w, "const WS4: u32 = {ws4}u;   // vec4 slots per k-row of ws (BN / 4 + 1 pad)\n");
        let _ = writeln!(w, "@group(0) @binding(0) var<storage, read> x: array<{elem}>;");
        let _ = writeln!(w, "@group(0) @binding(1) var<storage, read> w: array<{w_elem}>;\n");
        let _ = writeln!(w, "var<workgroup> xs: array<vec4<f32>, {}>;", bk * xs4);
        let _ = writeln!(w, "var<workgroup> ws: array<vec4<f32>, {}>;\n", bk * ws4);

        // Four consecutive k, from `k`, of the row of x or w that starts at element `i`; zero past
        // the edge. With vec4 loads K % 4 == 0, so a vec4 is wholly inside or wholly past K.
        for (name, buf, half) in [("load_x", "x", false), ("load_w", "w", w_f16)] {
            let _ = writeln!(w, "fn {name}(row_ok: bool, i: u32, k: u32) -> vec4<f32> {{");
            if vec4_loads {
                let load =
                    if half { format!("vec4<f32>({buf}[(i + k) / 4u])") } else { format!("{buf}[(i + k) / 4u]") };
                let _ = writeln!(w, "    if (row_ok && k < p.k) {{ return {load}; }}");
                let _ = writeln!(w, "    return vec4<f32>(0.0);");
            } else {
                let _ = writeln!(w, "    var v = vec4<f32>(0.0);");
                let _ = writeln!(w, "    if (row_ok) {{");
                for c in 0..V {
                    let load = if half { format!("f32({buf}[i + k + {c}u])") } else { format!("{buf}[i + k + {c}u]") };
                    let _ = writeln!(w, "        if (k + {c}u < p.k) {{ v[{c}] = {load}; }}");
                }
                let _ = writeln!(w, "    }}\n    return v;");
            }
            let _ = writeln!(w, "}}\n");
        }

        let _ = writeln!(w, "@compute @workgroup_size(WGX, WGY, 1)");
        let _ = writeln!(
            w,
            "fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,\n\
             \x20       @builtin(local_invocation_index) li: u32) {{"
        );
        let _ = writeln!(w, "    let b = wg.z;\n    let row0 = wg.y * BM;\n    let col0 = wg.x * BN;");
        let _ = writeln!(w, "    let x_base = b * p.m * p.k;\n    let w_base = b * p.w_batch_stride;");
        let _ = writeln!(w, "    let tiles = (p.k + BK - 1u) / BK;\n");
        // 1. which vec4s of the slabs this invocation loads: slot f = li + v * THREADS is row f / (BK/4),
        //    k-quad f % (BK/4); consecutive invocations read consecutive k of a row.
        let _ = writeln!(
            w,
            "    // 1. this invocation's share of each slab: row f / (BK/4), k-quad f % (BK/4), f = li + v*THREADS"
        );
        for (op, n, rows, base, dim) in [("x", lx, "row0", "x_base", "p.m"), ("w", lw, "col0", "w_base", "p.n")] {
            for v in 0..n {
                let _ = writeln!(w, "    let {op}r{v} = (li + {}u) / (BK / 4u);", v * threads);
                let _ = writeln!(w, "    let {op}q{v} = ((li + {}u) % (BK / 4u)) * 4u;", v * threads);
                let _ = writeln!(w, "    let {op}ok{v} = {rows} + {op}r{v} < {dim};");
                let _ = writeln!(w, "    let {op}i{v} = {base} + ({rows} + {op}r{v}) * p.k;");
            }
        }
        let _ = writeln!(w, "\n    // 2. prefetch tile 0 into registers; zero the accumulators");
        for v in 0..lx {
            let _ = writeln!(w, "    var px{v} = load_x(xok{v}, xi{v}, xq{v});");
        }
        for v in 0..lw {
            let _ = writeln!(w, "    var pw{v} = load_w(wok{v}, wi{v}, wq{v});");
        }
        for i in 0..tm {
            for j in 0..tn4 {
                let _ = writeln!(w, "    var acc{i}_{j} = vec4<f32>(0.0);");
            }
        }
        let _ = writeln!(w, "\n    for (var t = 0u; t < tiles; t++) {{");
        let _ = writeln!(w, "        // 3. registers -> workgroup memory, transposed to k-major");
        for (op, n, stride) in [("x", lx, "XS4"), ("w", lw, "WS4")] {
            let (slab, pre) = if op == "x" { ("xs", "px") } else { ("ws", "pw") };
            for v in 0..n {
                for c in 0..V {
                    let _ = writeln!(
                        w,
                        "        {slab}[({op}q{v} + {c}u) * {stride} + {op}r{v} / 4u][{op}r{v} % 4u] = {pre}{v}[{c}];"
                    );
                }
            }
        }
        let _ = writeln!(w, "        workgroupBarrier();");
        let _ = writeln!(w, "        // 4. issue the next tile's loads; they land while this tile is multiplied");
        let _ = writeln!(w, "        if (t + 1u < tiles) {{\n            let k1 = (t + 1u) * BK;");
        for v in 0..lx {
            let _ = writeln!(w, "            px{v} = load_x(xok{v}, xi{v}, k1 + xq{v});");
        }
        for v in 0..lw {
            let _ = writeln!(w, "            pw{v} = load_w(wok{v}, wi{v}, k1 + wq{v});");
        }
        let _ = writeln!(w, "        }}");
        let _ = writeln!(w, "        // 5. BK rank-1 updates of the TM x TN register block");
        let _ = writeln!(w, "        let xo = lid.y * {tm4}u;\n        let wo = lid.x * {tn4}u;");
        for kk in 0..bk {
            for i in 0..tm4 {
                let _ = writeln!(w, "        let a{i}_{kk} = xs[{kk}u * XS4 + xo + {i}u];");
            }
            for j in 0..tn4 {
                let _ = writeln!(w, "        let c{j}_{kk} = ws[{kk}u * WS4 + wo + {j}u];");
            }
            for i in 0..tm {
                let comp = ["x", "y", "z", "w"][(i % V) as usize];
                for j in 0..tn4 {
                    let _ = writeln!(
                        w,
                        "        acc{i}_{j} = fma(vec4<f32>(a{}_{kk}.{comp}), c{j}_{kk}, acc{i}_{j});",
                        i / V
                    );
                }
            }
        }
        let _ = writeln!(w, "        workgroupBarrier();\n    }}\n");
        let _ = writeln!(w, "    // 6. epilogue: bias, activation, bounded scalar stores");
        let _ = writeln!(w, "    let gm0 = row0 + lid.y * {tm}u;\n    let gn0 = col0 + lid.x * {tn}u;");
        for j in 0..tn4 {
            let _ = writeln!(w, "    var bias{j} = vec4<f32>(0.0);");
            let _ = writeln!(w, "    if (p.has_bias != 0u) {{");
            for c in 0..V {
                let _ = writeln!(
                    w,
                    "        if (gn0 + {}u < p.n) {{ bias{j}[{c}] = bias[gn0 + {}u]; }}",
                    j * V + c,
                    j * V + c
                );
            }
            let _ = writeln!(w, "    }}");
        }
        for i in 0..tm {
            let _ = writeln!(w, "    if (gm0 + {i}u < p.m) {{");
            let _ = writeln!(w, "        let o = (b * p.m + gm0 + {i}u) * p.n + gn0;");
            for j in 0..tn4 {
                let _ = writeln!(w, "        let v{i}_{j} = acc{i}_{j} + bias{j};");
                for c in 0..V {
                    let col = j * V + c;
                    let _ =
                        writeln!(w, "        if (gn0 + {col}u < p.n) {{ out[o + {col}u] = activate(v{i}_{j}[{c}]); }}");
                }
            }
            let _ = writeln!(w, "    }}");
        }
        let _ = writeln!(w, "}}");
        s
    }
}

impl std::fmt::Display for MatmulTile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}x{}x{}/{}x{}", self.bm, self.bn, self.bk, self.tm, self.tn)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_tile_is_valid_and_names_round_trip() {
        for t in MatmulTile::FAMILY {
            t.check().unwrap();
            assert_eq!(MatmulTile::parse(&t.name()), Some(t));
            assert!(t.threads() <= 256, "{t}: more invocations than WebGPU's default limit");
        }
        assert!(MatmulTile::FAMILY.contains(&MatmulTile::DEFAULT));
        assert_eq!(MatmulTile::parse("128x64x16/8x3"), None);
        assert_eq!(MatmulTile::parse("nonsense"), None);
    }

    #[test]
    fn generated_kernels_index_no_private_array() {
        // the point of generating: every register is a named value, never `acc[i]`
        for t in MatmulTile::FAMILY {
            for v4 in [false, true] {
                let src = t.wgsl(v4, false);
                assert!(!src.contains("array<f32, "), "{t}: a private array crept in");
                assert!(!src.contains("var<private>"), "{t}");
            }
        }
    }
}
