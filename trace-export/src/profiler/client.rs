//! The capture client, like `tf.profiler.experimental.client.trace`: profiles running
//! programs that serve the profiler ([`super::server`], or any TensorFlow or JAX profiler
//! server) and writes what they answer as one profile run.
//!
//! ```no_run
//! use trace_export::profiler;
//!
//! # fn main() -> Result<(), trace_export::Error> {
//! // Two hosts, recorded at the same time, into one run of the Profile tab.
//! let run_dir = profiler::client::trace("10.0.0.1:6009,10.0.0.2:6009", "logs", 2000)?;
//! println!("wrote {}", run_dir.display());
//! # Ok(()) }
//! ```
//!
//! Each address becomes one host of the run:
//! `<logdir>/plugins/profile/<YYYY_MM_DD_HH_MM_SS>/<host>_<port>.xplane.pb` (the address
//! with `:` replaced by `_`, as TensorBoard's own capture names it). The hosts are captured in
//! parallel; a host that cannot be reached, is busy or records nothing is reported while the
//! others are still written.

use std::future::Future;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::uri::PathAndQuery;
use hyper::body::Incoming;
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tonic::{Code, Status};
use tonic_prost::ProstCodec;

use crate::error::{Error, Result};
use crate::files;
use crate::proto::profiler_service::{
    ProfileOptions, ProfileRequest, ProfileResponse, PROFILE_PATH, XPLANE_TOOL,
};

/// How [`trace_with`] captures.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaptureOptions {
    /// How long each host records, in milliseconds.
    pub duration_ms: u64,
    /// Host events recorded: level at most this (1 critical, 2 info, 3 verbose). Default: 2.
    pub host_tracer_level: u32,
    /// The most events a host should record (servers may cap it lower). Default: 1 000 000,
    /// as TensorBoard asks.
    pub max_events: u64,
    /// Attempts per host; a host that cannot be reached or is busy is tried again after a
    /// second, up to this many times in all. Default: 3.
    pub attempts: u32,
    /// Delay before the hosts start recording, so that they record the same time window.
    /// Default (`None`): none for one host, 1 s for several.
    pub delay_ms: Option<u64>,
    /// The longest to wait for a connection to a host. Default: 5 s.
    pub connect_timeout: Duration,
    /// A larger answer from a host is refused. Default: 2 GiB less one byte, protobuf's limit.
    pub max_response_bytes: usize,
}

impl Default for CaptureOptions {
    fn default() -> Self {
        CaptureOptions {
            duration_ms: 2000,
            host_tracer_level: 2,
            max_events: 1_000_000,
            attempts: 3,
            delay_ms: None,
            connect_timeout: Duration::from_secs(5),
            max_response_bytes: (2 << 30) - 1,
        }
    }
}

/// What [`trace_with`] did.
#[derive(Clone, Debug)]
pub struct CaptureReport {
    /// The run directory, `<logdir>/plugins/profile/<run>`.
    pub run_dir: PathBuf,
    /// One entry per address, in the order given.
    pub hosts: Vec<HostCapture>,
}

/// The outcome of one address of a capture.
#[derive(Clone, Debug)]
pub struct HostCapture {
    /// The address, as given.
    pub address: String,
    /// The `.xplane.pb` file written, or why there is none.
    pub result: std::result::Result<PathBuf, String>,
}

/// Captures `duration_ms` of every address of `service_addr` (comma-separated `host:port`)
/// into one run under `logdir`, and returns the run directory.
///
/// Hosts that gave no profile are reported on standard error; it is an error
/// ([`Error::Capture`]) only when none gave one. See [`trace_with`] for the details.
pub fn trace(service_addr: &str, logdir: impl AsRef<Path>, duration_ms: u64) -> Result<PathBuf> {
    let report = trace_with(
        service_addr,
        logdir,
        CaptureOptions {
            duration_ms,
            ..CaptureOptions::default()
        },
    )?;
    for host in &report.hosts {
        if let Err(reason) = &host.result {
            eprintln!("trace-export: capture: {}: {reason}", host.address);
        }
    }
    Ok(report.run_dir)
}

/// Captures every address of `service_addr` (comma-separated `host:port`, each optionally
/// prefixed with `grpc://`) in parallel into one run
/// `<logdir>/plugins/profile/<YYYY_MM_DD_HH_MM_SS>/` (UTC; `_2`, `_3` ... added when that
/// run exists), one `<address with ':' as '_'>.xplane.pb` per host that answered.
///
/// Each host gets [`CaptureOptions::attempts`] attempts (retrying only when it could not be
/// reached or was busy), a connection deadline, and the answer deadline TensorBoard uses:
/// the start delay plus the larger of 60 s and twice the duration.
///
/// Errors: [`Error::InvalidOption`] for an empty address list, a zero duration or level out
/// of range; [`Error::Capture`] when no host gave a profile (nothing is written then);
/// [`Error::Io`] when the run directory or a file cannot be written.
pub fn trace_with(
    service_addr: &str,
    logdir: impl AsRef<Path>,
    options: CaptureOptions,
) -> Result<CaptureReport> {
    let addresses: Vec<String> = service_addr
        .split(',')
        .map(|a| a.trim())
        .map(|a| a.strip_prefix("grpc://").unwrap_or(a).to_owned())
        .filter(|a| !a.is_empty())
        .collect();
    if addresses.is_empty() {
        return Err(Error::InvalidOption {
            option: "service_addr",
            reason: format!("{service_addr:?} names no host:port"),
        });
    }
    if options.duration_ms == 0 {
        return Err(Error::InvalidOption {
            option: "duration_ms",
            reason: "must be at least 1".into(),
        });
    }
    if !(1..=3).contains(&options.host_tracer_level) {
        return Err(Error::InvalidOption {
            option: "host_tracer_level",
            reason: format!(
                "{} is not 1 (critical), 2 (info) or 3 (verbose)",
                options.host_tracer_level
            ),
        });
    }
    let profile_dir = logdir.as_ref().join("plugins").join("profile");
    let now = wall_ns();
    let run = fresh_run_name(&profile_dir, &files::run_name(now));
    let run_dir = profile_dir.join(&run);
    let delay_ms = options
        .delay_ms
        .unwrap_or(if addresses.len() > 1 { 1000 } else { 0 });

    // On a thread of its own: the caller may be a thread of an async runtime, where a
    // runtime cannot block.
    let answers = std::thread::scope(|scope| {
        let capture = scope.spawn(|| {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .enable_time()
                .build()
                .map_err(|e| Error::Network {
                    action: "start the capture client for",
                    addr: service_addr.to_owned(),
                    source: e,
                })?;
            Ok(runtime.block_on(capture_all(
                &addresses,
                &run,
                &profile_dir,
                delay_ms,
                &options,
            )))
        });
        capture.join().unwrap_or_else(|_| {
            Err(Error::Capture {
                service_addr: service_addr.to_owned(),
                reason: "the capture thread panicked".into(),
            })
        })
    })?;

    let mut hosts = Vec::with_capacity(addresses.len());
    let mut written = 0;
    for (address, answer) in addresses.into_iter().zip(answers) {
        let result = match answer {
            Ok(response) => {
                match response
                    .tool_data
                    .into_iter()
                    .find(|tool| tool.name == XPLANE_TOOL)
                {
                    Some(tool) => {
                        files::create_dir(&run_dir)?;
                        let path =
                            run_dir.join(format!("{}.{XPLANE_TOOL}", host_file_name(&address)));
                        files::Unpublished::write(&path, |file| {
                            std::io::Write::write_all(file, &tool.data)
                        })?
                        .publish(&path)?;
                        written += 1;
                        Ok(path)
                    }
                    None => Err("the host answered without a profile (xplane.pb)".to_owned()),
                }
            }
            Err(reason) => Err(reason),
        };
        hosts.push(HostCapture { address, result });
    }
    if written == 0 {
        let reason = hosts
            .iter()
            .map(|host| {
                let reason = host.result.as_ref().err().map_or("", String::as_str);
                format!("{}: {reason}", host.address)
            })
            .collect::<Vec<_>>()
            .join("; ");
        return Err(Error::Capture {
            service_addr: service_addr.to_owned(),
            reason,
        });
    }
    Ok(CaptureReport { run_dir, hosts })
}

/// Captures every address in parallel; one answer or failure per address, in order.
async fn capture_all(
    addresses: &[String],
    run: &str,
    profile_dir: &Path,
    delay_ms: u64,
    options: &CaptureOptions,
) -> Vec<std::result::Result<ProfileResponse, String>> {
    let start_timestamp_ns = if delay_ms == 0 {
        0
    } else {
        wall_ns().saturating_add(delay_ms.saturating_mul(1_000_000))
    };
    let tasks: Vec<_> = addresses
        .iter()
        .map(|address| {
            let request = ProfileRequest {
                duration_ms: options.duration_ms,
                max_events: options.max_events,
                tools: vec![XPLANE_TOOL.trim_end_matches(".pb").to_owned()],
                opts: Some(ProfileOptions {
                    host_tracer_level: options.host_tracer_level,
                    device_tracer_level: 1,
                    version: 1,
                    start_timestamp_ns,
                    duration_ms: options.duration_ms,
                    ..ProfileOptions::default()
                }),
                repository_root: profile_dir.to_string_lossy().into_owned(),
                session_id: run.to_owned(),
                host_name: address.clone(),
                ..ProfileRequest::default()
            };
            let deadline = Duration::from_millis(
                delay_ms.saturating_add(options.duration_ms.saturating_mul(2).max(60_000)),
            );
            tokio::spawn(capture_host(
                address.clone(),
                request,
                deadline,
                options.clone(),
            ))
        })
        .collect();
    let mut answers = Vec::with_capacity(tasks.len());
    for task in tasks {
        answers.push(
            task.await
                .unwrap_or_else(|e| Err(format!("the capture task failed: {e}"))),
        );
    }
    answers
}

fn wall_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// `base`, or `base_2`, `base_3` ... when a run of that name exists already.
fn fresh_run_name(profile_dir: &Path, base: &str) -> String {
    let mut candidate = base.to_owned();
    let mut n = 2;
    while profile_dir.join(&candidate).exists() {
        candidate = format!("{base}_{n}");
        n += 1;
    }
    candidate
}

/// The host part of the file name: the address with `:` as `_`, as TensorBoard's capture
/// names it (`127.0.0.1_6009`, `[__1]_6009`); characters that would leave the directory are
/// replaced too.
pub(crate) fn host_file_name(address: &str) -> String {
    let name: String = address
        .chars()
        .map(|c| match c {
            ':' | '/' | '\\' | '\0' => '_',
            c if c.is_control() => '_',
            c => c,
        })
        .collect();
    match name.trim_start_matches('.') {
        "" => "host".to_owned(),
        trimmed => trimmed.to_owned(),
    }
}

/// Why one attempt failed, and whether another may succeed.
struct Failure {
    reason: String,
    retry: bool,
}

async fn capture_host(
    address: String,
    request: ProfileRequest,
    deadline: Duration,
    options: CaptureOptions,
) -> std::result::Result<ProfileResponse, String> {
    let attempts = options.attempts.max(1);
    let mut attempt = 1;
    loop {
        match profile_once(&address, request.clone(), deadline, &options).await {
            Ok(response) if response.empty_trace => {
                return Err(
                    "no trace event was collected (the program recorded nothing in \
                     the capture's time)"
                        .to_owned(),
                )
            }
            Ok(response) => return Ok(response),
            Err(failure) if failure.retry && attempt < attempts => {
                attempt += 1;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(failure) => return Err(failure.reason),
        }
    }
}

async fn profile_once(
    address: &str,
    request: ProfileRequest,
    deadline: Duration,
    options: &CaptureOptions,
) -> std::result::Result<ProfileResponse, Failure> {
    let unreachable = |reason: String| Failure {
        reason: format!("unreachable: {reason}"),
        retry: true,
    };
    let resolved: Vec<SocketAddr> = address
        .to_socket_addrs()
        .map_err(|e| Failure {
            reason: format!("cannot resolve the address: {e}"),
            retry: false,
        })?
        .collect();
    let connected = tokio::time::timeout(options.connect_timeout, async {
        let stream = tokio::net::TcpStream::connect(&resolved[..]).await?;
        let _ = stream.set_nodelay(true);
        http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .handshake::<_, tonic::body::Body>(TokioIo::new(stream))
            .await
            .map_err(std::io::Error::other)
    })
    .await;
    let (sender, connection) = match connected {
        Ok(Ok(connected)) => connected,
        Ok(Err(e)) => return Err(unreachable(e.to_string())),
        Err(_) => {
            return Err(unreachable(format!(
                "no connection within {} ms",
                options.connect_timeout.as_millis()
            )))
        }
    };
    // Drives the connection; it ends when the answer is in and `sender` is dropped.
    let driver = tokio::spawn(connection);
    let origin: http::Uri = format!("http://{address}").parse().map_err(|e| Failure {
        reason: format!("not a host:port: {e}"),
        retry: false,
    })?;
    let mut grpc = tonic::client::Grpc::with_origin(Http2(sender), origin)
        .max_decoding_message_size(options.max_response_bytes)
        .max_encoding_message_size(1 << 20);
    let mut request = tonic::Request::new(request);
    request.set_timeout(deadline);
    let answer = tokio::time::timeout(deadline + Duration::from_secs(5), async {
        grpc.ready()
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        grpc.unary(
            request,
            PathAndQuery::from_static(PROFILE_PATH),
            ProstCodec::<ProfileRequest, ProfileResponse>::new(),
        )
        .await
    })
    .await;
    drop(grpc);
    driver.abort();
    match answer {
        Ok(Ok(response)) => Ok(response.into_inner()),
        Ok(Err(status)) => Err(Failure {
            retry: status.code() == Code::Unavailable,
            reason: format!(
                "{}: {}",
                super::server::code_name(status.code()),
                status.message()
            ),
        }),
        Err(_) => Err(Failure {
            reason: format!("no answer within {} ms", deadline.as_millis() + 5000),
            retry: false,
        }),
    }
}

/// An HTTP/2 connection as the service tonic's client sends requests through.
struct Http2(http2::SendRequest<tonic::body::Body>);

impl tower_service::Service<http::Request<tonic::body::Body>> for Http2 {
    type Response = http::Response<Incoming>;
    type Error = hyper::Error;
    type Future =
        Pin<Box<dyn Future<Output = std::result::Result<Self::Response, hyper::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<std::result::Result<(), hyper::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        Box::pin(self.0.send_request(request))
    }
}

#[cfg(test)]
mod tests {
    use super::host_file_name;

    #[test]
    fn host_file_names_follow_tensorboard() {
        assert_eq!(host_file_name("127.0.0.1:6009"), "127.0.0.1_6009");
        assert_eq!(host_file_name("[::1]:6009"), "[__1]_6009");
        assert_eq!(host_file_name("../x:1"), "_x_1");
        assert_eq!(host_file_name(""), "host");
    }
}
