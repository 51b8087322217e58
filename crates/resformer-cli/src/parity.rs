//! `resformer parity`: PyTorch's fixtures on this machine's backend, a row per fixture.

use std::path::PathBuf;

use resformer::model::fixture::{load_dir, PYTORCH_ATOL};
use resformer::ops::{compare, Tol};

use crate::{CliError, CliResult, DeviceArgs};

#[derive(clap::Args)]
pub struct Args {
    /// A directory written by scripts/make_fixtures.py (with manifest.txt)
    #[arg(long, default_value = "tests/fixtures/block")]
    dir: PathBuf,
    #[command(flatten)]
    device: DeviceArgs,
}

pub fn run(a: Args) -> CliResult {
    let fixtures = load_dir(&a.dir)?;
    let engine = a.device.engine()?;
    let tol = Tol { atol: PYTORCH_ATOL, rtol: 0.0 };
    let (mut misses, mut worst) = (0, 0.0f32);
    println!(
        "{:<18} {:>12}  result (max abs error against PyTorch f64, tolerance {PYTORCH_ATOL:.0e})",
        "fixture", "error"
    );
    for f in &fixtures {
        let stack = engine.load_stack(f.weights.clone(), f.cfg)?;
        let got = stack.forward(&f.input, f.shape.seq, f.shape.batch, f.key_pad.as_deref())?;
        let d = compare(&got, &f.output, tol);
        let ok = d.bad == 0 && got.len() == f.output.len();
        misses += usize::from(!ok);
        worst = worst.max(d.max_abs);
        println!("{:<18} {:>12.3e}  {}", f.name, d.max_abs, if ok { "ok" } else { "MISS" });
    }
    println!(
        "parity on {}: {} of {} fixtures within {PYTORCH_ATOL:.0e}, largest error {worst:.2e}",
        engine.choice(),
        fixtures.len() - misses,
        fixtures.len()
    );
    if misses > 0 {
        return Err(CliError::Failed(format!("{misses} fixture(s) outside the PyTorch tolerance")));
    }
    Ok(())
}
