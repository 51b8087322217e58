//! `resformer-server`: the embedding server's command line.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use resformer::{Device, Engine, EngineOptions};
use resformer_server::{router, AppState, Limits};

/// An embedding server: OpenAI's /v1/embeddings and TEI's /embed over one dynamic batcher.
#[derive(Parser)]
#[command(name = "resformer-server", version, args_override_self = true)]
struct Args {
    /// A sentence-transformers BERT directory
    #[arg(long, value_name = "DIR")]
    model: PathBuf,
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// 0 binds a free port (the startup line says which)
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// auto, cpu, reference, gpu or gpu:N
    #[arg(long, default_value = "auto", value_parser = |s: &str| s.parse::<Device>().map_err(|e| e.to_string()))]
    device: Device,
    /// Padded tokens per forward
    #[arg(long, default_value_t = 16384)]
    max_batch_tokens: usize,
    /// Inputs per forward [default: as many as --max-batch-tokens allows]
    #[arg(long, value_name = "N")]
    max_batch_requests: Option<usize>,
    /// Inputs admitted at once over all requests; more get 429 with Retry-After
    #[arg(long, default_value_t = 512)]
    max_concurrent_requests: usize,
    /// Inputs per request
    #[arg(long, default_value_t = 2048)]
    max_client_batch_size: usize,
    /// Tokens per input [default: the model's max_seq_length]
    #[arg(long)]
    max_input_tokens: Option<usize>,
    /// Truncate inputs over the token limit instead of refusing them
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    auto_truncate: bool,
    /// How long a request may wait for its vectors: 30s, 500ms, 2m (a bare number is seconds)
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    request_timeout: Duration,
    /// Request body size: 2MB, 512KB, 1MiB (a bare number is bytes)
    #[arg(long, default_value = "2MB", value_parser = parse_size)]
    payload_limit: usize,
    /// Require `Authorization: Bearer KEY` (all routes but /health)
    #[arg(long)]
    api_key: Option<String>,
}

fn main() -> std::process::ExitCode {
    match serve(Args::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn serve(a: Args) -> Result<(), Box<dyn std::error::Error>> {
    let engine = Engine::new_blocking(EngineOptions::from_env()?.with_device(a.device))?;
    let model = engine.load_bert(&a.model)?;
    let mut limits = Limits::defaults(model.max_tokens());
    limits.max_batch_tokens = a.max_batch_tokens.max(1);
    limits.max_concurrent_requests = a.max_concurrent_requests;
    limits.max_client_batch_size = a.max_client_batch_size;
    limits.max_input_tokens = a.max_input_tokens.unwrap_or(model.max_tokens()).clamp(1, model.max_tokens());
    limits.auto_truncate = a.auto_truncate;
    limits.max_batch_requests = a.max_batch_requests.unwrap_or(usize::MAX).max(1);
    limits.request_timeout = a.request_timeout.max(Duration::from_millis(1));
    limits.payload_limit = a.payload_limit;
    limits.api_key = a.api_key.clone();
    let name = a.model.file_name().map_or_else(|| a.model.display().to_string(), |n| n.to_string_lossy().into_owned());
    let state = AppState::new(model, limits, name);
    eprintln!("device: {}", state.device());
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind((a.host.as_str(), a.port)).await?;
        let addr = listener.local_addr()?;
        println!("listening on http://{addr}");
        axum::serve(listener, router(state)).with_graceful_shutdown(shutdown()).await?;
        eprintln!("shut down: every request in flight answered");
        Ok(())
    })
}

/// `30s`, `500ms`, `2m`, `1h`, or a bare number of seconds.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num.parse().map_err(|_| format!("{s:?}: expected a duration such as 30s, 500ms or 2m"))?;
    let scale = match unit.trim() {
        "" | "s" => 1.0,
        "ms" => 1e-3,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        u => return Err(format!("{s:?}: unknown unit {u:?} (use ms, s, m or h)")),
    };
    Ok(Duration::from_secs_f64(n * scale))
}

/// `2MB`, `512KB`, `1MiB`, `2GB`, or a bare number of bytes (KB and MB are powers of 1024, as
/// TEI's and axum's limits are).
fn parse_size(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num.parse().map_err(|_| format!("{s:?}: expected a size such as 2MB or 512KB"))?;
    let scale = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" | "kib" => 1024.0,
        "m" | "mb" | "mib" => 1024.0 * 1024.0,
        "g" | "gb" | "gib" => 1024.0 * 1024.0 * 1024.0,
        u => return Err(format!("{s:?}: unknown unit {u:?} (use B, KB, MB or GB)")),
    };
    Ok((n * scale) as usize)
}

/// SIGTERM or SIGINT: stop accepting and drain; a second signal exits at once.
async fn shutdown() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    eprintln!("draining: finishing the requests in flight (a second signal exits now)");
    tokio::spawn(async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        std::process::exit(130);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_sizes_read_as_tei_and_the_issue_write_them() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("5 parsecs").unwrap_err().contains("unknown unit"));
        assert!(parse_duration("s").is_err());
        assert_eq!(parse_size("2MB"), Ok(2 << 20));
        assert_eq!(parse_size("512kb"), Ok(512 << 10));
        assert_eq!(parse_size("2000"), Ok(2000));
        assert!(parse_size("2XB").unwrap_err().contains("unknown unit"));
    }
}
