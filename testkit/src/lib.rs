//! Test harness shared by every boxoffice test that needs a real component.
//!
//! [`Azurite`] starts npm's Azurite blob emulator on a free loopback port, installing it from
//! the npm registry into `~/.cache/boxoffice/azurite` first if no installation is found, and
//! stops it when dropped. A test never skips because Azurite is missing: it installs it, or fails
//! saying why (no Node.js/npm).
//!
//! [`Azurite::start_on_disk`] keeps its data in a folder instead of memory, so a test can
//! [`stop`](Azurite::stop) it (storage down: connections refused) and
//! [`restart`](Azurite::restart) it on the same port with everything it held.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The npm package and version range the harness installs.
pub const AZURITE_PACKAGE: &str = "azurite@3";

/// A free TCP port on 127.0.0.1, as the OS hands it out.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("cannot get a free port from the OS: {e}"))
}

/// Whether an HTTP server answers on `port`.
///
/// A bare connect is not proof: polling a port in the ephemeral range before anything listens
/// can connect the socket to itself (TCP simultaneous open), which both "succeeds" and takes
/// the port away from the server that was about to bind it.
fn answers_http(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    if stream.local_addr().ok() == stream.peer_addr().ok() {
        return false;
    }
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let request = format!("GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0u8; 5];
    stream.read_exact(&mut head).is_ok() && &head == b"HTTP/"
}

/// Where the harness keeps its Azurite installation.
pub fn azurite_home() -> PathBuf {
    let base = std::env::var_os("BOXOFFICE_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/boxoffice")))
        .unwrap_or_else(|| std::env::temp_dir().join("boxoffice-cache"));
    base.join("azurite")
}

static INSTALL: Mutex<()> = Mutex::new(());

/// Finds `azurite-blob`, installing it with npm when it is nowhere to be found.
pub fn azurite_blob_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("AZURITE_BLOB_BIN") {
        return PathBuf::from(p);
    }
    let home = azurite_home();
    let bin = home.join("node_modules/.bin/azurite-blob");
    let _guard = INSTALL.lock().unwrap_or_else(|p| p.into_inner());
    if bin.exists() {
        return bin;
    }
    std::fs::create_dir_all(&home)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", home.display()));
    eprintln!(
        "installing {AZURITE_PACKAGE} from npm into {}",
        home.display()
    );
    let status = Command::new("npm")
        .args(["install", "--no-audit", "--no-fund", "--loglevel=error", "--prefix"])
        .arg(&home)
        .arg(AZURITE_PACKAGE)
        .status()
        .unwrap_or_else(|e| {
            panic!("Azurite is not installed and npm could not be run ({e}); install Node.js and npm, or run ./scripts/test which installs everything")
        });
    assert!(
        status.success(),
        "npm install {AZURITE_PACKAGE} failed: {status}"
    );
    assert!(
        bin.exists(),
        "npm installed Azurite but {} is missing",
        bin.display()
    );
    bin
}

/// A running Azurite blob emulator, stopped on drop.
pub struct Azurite {
    child: Child,
    port: u16,
    /// Where it keeps its data; `None` in memory.
    location: Option<PathBuf>,
    /// Its certificate and key when it serves HTTPS and takes Microsoft Entra tokens.
    tls: Option<(PathBuf, PathBuf)>,
}

impl Azurite {
    /// Starts Azurite on a free port and waits until it accepts connections.
    pub fn start() -> Azurite {
        Azurite::launch(None)
    }

    /// Starts Azurite keeping its data in `location`, so that it survives [`Azurite::stop`].
    pub fn start_on_disk(location: &Path) -> Azurite {
        Azurite::launch(Some(location.to_path_buf()))
    }

    /// Starts Azurite in memory over HTTPS with `cert` and `key` (PEM), accepting OAuth bearer
    /// tokens (`--oauth basic`: it checks a token's lifetime, issuer and audience, not its
    /// signature), as a storage account reached with a managed identity. Azurite takes bearer
    /// tokens over HTTPS only.
    pub fn start_with_tokens(cert: &Path, key: &Path) -> Azurite {
        Azurite::launch_with(None, Some((cert.to_path_buf(), key.to_path_buf())))
    }

    fn launch(location: Option<PathBuf>) -> Azurite {
        Azurite::launch_with(location, None)
    }

    fn launch_with(location: Option<PathBuf>, tls: Option<(PathBuf, PathBuf)>) -> Azurite {
        let bin = azurite_blob_binary();
        let mut last_error = String::new();
        for _ in 0..3 {
            let port = free_port();
            match spawn(&bin, port, location.as_deref(), tls.as_ref()) {
                Ok(child) => {
                    let mut azurite = Azurite {
                        child,
                        port,
                        location: location.clone(),
                        tls: tls.clone(),
                    };
                    if azurite.wait_ready(Duration::from_secs(60)) {
                        return azurite;
                    }
                    last_error = format!("did not listen on port {port} within 60 s");
                }
                Err(e) => last_error = e.to_string(),
            }
        }
        panic!("could not start Azurite ({}): {last_error}", bin.display());
    }

    fn wait_ready(&mut self, timeout: Duration) -> bool {
        let started = Instant::now();
        while started.elapsed() < timeout {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            let ready = match self.tls {
                None => answers_http(self.port),
                // A TLS listener does not answer plain HTTP: one that accepts a connection
                // (not a connection to itself) will do, checked below to be ours.
                Some(_) => accepts(self.port),
            };
            if ready {
                // Ours, not a listener that somebody else started on the same port: a child
                // that lost the port exits at once.
                std::thread::sleep(Duration::from_millis(100));
                return matches!(self.child.try_wait(), Ok(None));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }

    /// Stops it (SIGTERM, so an on-disk Azurite saves its metadata): from now on connections to
    /// its port are refused, as when storage is down.
    pub fn stop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts it again on the same port, with the data an on-disk Azurite kept.
    pub fn restart(&mut self) {
        assert!(
            self.location.is_some(),
            "an in-memory Azurite loses its data when stopped: use Azurite::start_on_disk"
        );
        let bin = azurite_blob_binary();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            self.child = spawn(&bin, self.port, self.location.as_deref(), self.tls.as_ref())
                .unwrap_or_else(|e| panic!("could not restart Azurite: {e}"));
            if self.wait_ready(Duration::from_secs(30)) {
                return;
            }
            // The port may still be held a moment after the old process exited.
            assert!(
                Instant::now() < deadline,
                "Azurite did not come back on port {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The blob endpoint, `http://127.0.0.1:<port>` (`https://` when it serves TLS).
    pub fn endpoint(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }
}

/// Whether something other than ourselves accepts connections on `port`.
fn accepts(port: u16) -> bool {
    TcpStream::connect(("127.0.0.1", port))
        .is_ok_and(|stream| stream.local_addr().ok() != stream.peer_addr().ok())
}

/// A self-signed certificate for `127.0.0.1` (not a CA: rustls accepts such a certificate as
/// its own trust anchor) and its key, written to `dir` as `cert.pem` and `key.pem` by the
/// `openssl` command.
pub fn localhost_certificate(dir: &Path) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-addext",
            "basicConstraints=critical,CA:FALSE",
            "-addext",
            "extendedKeyUsage=serverAuth",
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap_or_else(|e| {
            panic!("the openssl command makes the test certificate (apt-get install openssl): {e}")
        });
    assert!(
        out.status.success(),
        "openssl could not make a certificate: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (cert, key)
}

fn spawn(
    bin: &Path,
    port: u16,
    location: Option<&Path>,
    tls: Option<&(PathBuf, PathBuf)>,
) -> std::io::Result<Child> {
    // In memory unless a folder is given: nothing to clean up. The telemetry Azurite sends by
    // default is turned off (tests must not reach the internet).
    let mut cmd = Command::new(bin);
    cmd.args(["--blobHost", "127.0.0.1", "--blobPort"])
        .arg(port.to_string())
        .args([
            "--silent",
            "--skipApiVersionCheck",
            "--loose",
            "--disableTelemetry",
        ]);
    match location {
        Some(dir) => cmd.arg("--location").arg(dir),
        None => cmd.arg("--inMemoryPersistence"),
    };
    if let Some((cert, key)) = tls {
        cmd.arg("--cert")
            .arg(cert)
            .arg("--key")
            .arg(key)
            .args(["--oauth", "basic"]);
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
}

impl Drop for Azurite {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
