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
    /// Seconds a request may wait for its vectors
    #[arg(long, default_value_t = 30.0)]
    request_timeout: f64,
    /// Request body bytes
    #[arg(long, default_value_t = 2 << 20)]
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
    limits.request_timeout = Duration::from_secs_f64(a.request_timeout.max(0.001));
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
