//! A Vision Transformer through the library API, as an app embedding the engine would use it:
//! load the committed model onto an engine, classify the handwritten digits' test split, and
//! print accuracy, precision, recall and F1.
//!
//!     bash scripts/fetch-digits.sh
//!     cargo run --release --example vit_digits

use std::path::Path;
use std::process::ExitCode;

use resformer::metrics::Report;
use resformer::model::vit::{test_split, Digits};
use resformer::{Engine, EngineOptions};

fn main() -> ExitCode {
    // an error is a message for the user, not a debug dump
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> resformer::Result<()> {
    let engine = Engine::new_blocking(EngineOptions::default())?; // a hardware GPU, else the CPU backend
    let dir = Path::new("assets/vit-digits");
    let model = engine.load_vit(dir)?;
    let digits = Digits::load(Path::new("data/digits/digits.csv"))?;
    let split = test_split(dir)?;
    let images: Vec<&[f32]> = split.iter().map(|&i| &digits.images[i][..]).collect();
    let truth: Vec<usize> = split.iter().map(|&i| digits.labels[i]).collect();
    let predicted = model.predict(&images)?;
    let report = Report::new(&truth, &predicted, model.config().classes);
    println!("{} test digits on {}", images.len(), engine.choice());
    println!(
        "accuracy {:.4}, macro precision {:.4}, recall {:.4}, F1 {:.4}",
        report.accuracy, report.macro_avg[0], report.macro_avg[1], report.macro_avg[2]
    );
    for c in 0..report.classes {
        println!(
            "  digit {c}: precision {:.3} recall {:.3} F1 {:.3}",
            report.precision[c], report.recall[c], report.f1[c]
        );
    }
    Ok(())
}
