//! `resformer classify`: the Vision Transformer on the handwritten digits' test split, scored
//! by accuracy, precision, recall and F1; or one digit, its probabilities and where the class
//! token looks.

use std::path::PathBuf;
use std::time::Instant;

use resformer::metrics::Report;
use resformer::model::vit::{softmax, test_split, Digits, VitClassifier};
use resformer::ops::median;
use resformer::Engine;
use resformer_cli::heatmap::Heatmap;

use crate::{positive, usage, CliError, CliResult, DeviceArgs};

#[derive(clap::Args)]
#[command(allow_negative_numbers = true)]
pub struct Args {
    /// The model directory (config.json, model.safetensors, split.json)
    #[arg(long, value_name = "DIR", default_value = "assets/vit-digits")]
    model: PathBuf,
    /// The digits (bash scripts/fetch-digits.sh)
    #[arg(long, value_name = "CSV", default_value = "data/digits/digits.csv")]
    data: PathBuf,
    #[command(flatten)]
    device: DeviceArgs,
    /// Print the report (with --image, the image's result) as JSON
    #[arg(long)]
    json: bool,
    /// Draw the confusion matrix of the whole split here (.png or .svg)
    #[arg(long, value_name = "confusion.png|svg")]
    out: Option<PathBuf>,
    /// Show test image N: the digit, its probabilities, the class token's attention
    #[arg(long, value_name = "N", value_parser = crate::non_negative)]
    image: Option<u64>,
    /// Timed passes over the test split (the median is reported), after a warm-up
    #[arg(long, default_value_t = 3, value_parser = positive)]
    runs: usize,
    /// Check every step of the model (patch embedding, position add, blocks, norm, head) on
    /// the first 8 test images against the reference, on the reference's inputs
    #[arg(long, conflicts_with_all = ["image", "out", "json"])]
    check_ops: bool,
}

/// What `classify --image N --json` prints.
#[derive(serde::Serialize)]
struct ImageJson<'a> {
    backend: &'a str,
    image: usize,
    row: usize,
    label: usize,
    predicted: usize,
    probabilities: &'a [f32],
    class_token_attention: &'a [f32],
}

/// What `classify --json` prints.
#[derive(serde::Serialize)]
struct JsonOut<'a> {
    model: String,
    backend: &'a str,
    images: usize,
    images_per_s: f64,
    report: &'a Report,
}

pub fn run(a: Args) -> CliResult {
    if a.image.is_some() && a.out.is_some() {
        return Err(usage("--out draws the confusion matrix of the whole test split; it does nothing with --image"));
    }
    let engine = a.device.engine()?;
    let model = engine.load_vit(&a.model)?;
    let digits =
        Digits::load(&a.data).map_err(|e| usage(format!("{e} (bash scripts/fetch-digits.sh fetches the digits)")))?;
    let split = test_split(&a.model)?;
    if let Some(&bad) = split.iter().find(|&&i| i >= digits.labels.len()) {
        return Err(usage(format!("split.json names image {bad}, but the data has {}", digits.labels.len())));
    }
    if a.check_ops {
        println!("model: {} on {}", a.model.display(), model.describe());
        let images: Vec<&[f32]> = split.iter().take(8).map(|&i| &digits.images[i][..]).collect();
        let t = Instant::now();
        let checks = model.check_ops(&images)?;
        return crate::run::report_check_ops(&checks, t);
    }
    if let Some(n) = a.image {
        return one_image(&model, &engine, &digits, &split, n as usize, a.json);
    }
    let images: Vec<&[f32]> = split.iter().map(|&i| &digits.images[i][..]).collect();
    let truth: Vec<usize> = split.iter().map(|&i| digits.labels[i]).collect();
    model.predict(&images)?; // warm-up: pipelines, plans
    let mut times = Vec::new();
    let mut predicted = Vec::new();
    for _ in 0..a.runs {
        let t = Instant::now();
        predicted = model.predict(&images)?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let ms = median(&times);
    let report = Report::new(&truth, &predicted, model.config().classes);
    let rate = images.len() as f64 / (ms / 1e3);
    if a.json {
        let out = JsonOut {
            model: a.model.display().to_string(),
            backend: engine.choice(),
            images: images.len(),
            images_per_s: rate,
            report: &report,
        };
        let text = serde_json::to_string(&out).map_err(|e| CliError::Failed(format!("writing JSON: {e}")))?;
        println!("{text}");
    } else {
        let c = model.config();
        println!(
            "model: {} ({} blocks, embed {}, {} heads, ff {}; {}x{} patches, {} tokens)",
            a.model.display(),
            c.layers,
            c.embed,
            c.heads,
            c.ff,
            c.patch,
            c.patch,
            c.tokens()
        );
        println!("backend: {}", engine.choice());
        println!(
            "test split: {} images (split.json); classified in {ms:.1} ms (median of {} passes after a warm-up): \
             {rate:.0} images/s",
            images.len(),
            times.len()
        );
        println!("accuracy {:.4} ({} of {})\n", report.accuracy, report.accuracy_count(), images.len());
        print!("{}", report.text());
    }
    if let Some(out) = &a.out {
        let names: Vec<String> = (0..report.classes).map(|c| c.to_string()).collect();
        let counts: Vec<f32> = report.confusion.iter().flatten().map(|&v| v as f32).collect();
        let max_row = report.support.iter().copied().max().unwrap_or(1) as f32;
        Heatmap {
            title: format!("confusion matrix, {} test digits, accuracy {:.4}", images.len(), report.accuracy),
            x_label: "predicted",
            y_label: "true",
            rows: &names,
            cols: &names,
            values: &counts,
            scale: max_row,
            labels: counts.iter().map(|v| format!("{v}")).collect(),
            highlight_row: None,
        }
        .save(out, "classify")?;
        if !a.json {
            println!("wrote the confusion matrix to {}", out.display());
        }
    }
    Ok(())
}

/// The walk-through for vision: one test digit, its class probabilities, and the class token's
/// attention over the patches in the last block.
fn one_image(
    model: &VitClassifier,
    engine: &Engine,
    digits: &Digits,
    split: &[usize],
    n: usize,
    json: bool,
) -> CliResult {
    let &index = split.get(n).ok_or_else(|| {
        usage(format!("--image {n}: the test split has {} images (0..={})", split.len(), split.len().saturating_sub(1)))
    })?;
    let (img, label) = (&digits.images[index][..], digits.labels[index]);
    let c = model.config();
    let logits = model.logits(&[img])?;
    let p = softmax(&logits);
    let predicted = resformer::model::vit::argmax(&logits);
    let block = c.layers - 1;
    let att = model.class_attention(img, block)?;
    if json {
        let out = ImageJson {
            backend: engine.choice(),
            image: n,
            row: index,
            label,
            predicted,
            probabilities: &p,
            class_token_attention: &att,
        };
        let text = serde_json::to_string(&out).map_err(|e| CliError::Failed(format!("writing JSON: {e}")))?;
        println!("{text}");
        return Ok(());
    }
    println!("backend: {}", engine.choice());
    println!("test image {n} (row {index} of the data set), true class {label}, predicted {predicted}:");
    let shade = |v: f32| [" ", ".", ":", "+", "#"][((v / 16.0 * 4.99) as usize).min(4)];
    for r in 0..c.image {
        let row: String = (0..c.image).map(|x| shade(img[r * c.image + x]).repeat(2)).collect();
        println!("  |{row}|");
    }
    println!("class probabilities:");
    for (k, &v) in p.iter().enumerate() {
        let mark = if k == predicted { "  <- predicted" } else { "" };
        println!("  {k}  {v:.4}  {}{mark}", "#".repeat((v * 40.0).round() as usize));
    }
    let g = c.image / c.patch;
    println!(
        "the class token's attention in block {block} (mean of {} heads, reference kernels): itself {:.3}, patches:",
        c.heads, att[0]
    );
    for r in 0..g {
        let row: Vec<String> = (0..g).map(|x| format!("{:.3}", att[1 + r * g + x])).collect();
        println!("  {}", row.join("  "));
    }
    Ok(())
}
