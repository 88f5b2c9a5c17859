//! A throwaway PostgreSQL server for tests: Debian's `initdb` and `pg_ctl` in a temporary
//! folder, on a free loopback port, as the `postgres` user when the tests run as root
//! (the server refuses to run as root). Stopped and removed when dropped. No mock: the
//! shared store's tests talk to a real server.

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct TempPg {
    dir: tempfile::TempDir,
    bin: PathBuf,
    pub port: u16,
}

/// The folder with `initdb` and `pg_ctl`: on PATH, else Debian's
/// /usr/lib/postgresql/N/bin (newest N).
fn bin_dir() -> PathBuf {
    if let Ok(out) = Command::new("sh")
        .args(["-c", "command -v pg_ctl"])
        .output()
        && out.status.success()
    {
        let p = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if let Ok(real) = std::fs::canonicalize(&p)
            && let Some(d) = real.parent()
            && d.join("initdb").exists()
        {
            return d.to_path_buf();
        }
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is not installed (no /usr/lib/postgresql): the README's test command installs it")
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|b| b.join("initdb").exists())
        .collect();
    found.sort_by_key(|p| {
        p.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    found
        .pop()
        .expect("no PostgreSQL server binaries under /usr/lib/postgresql")
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// `program args` as the server's user.
fn as_server_user(program: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl TempPg {
    /// A new, empty server (a database named `spamscope`, user `postgres`, trusted on
    /// loopback).
    pub fn start() -> TempPg {
        let bin = bin_dir();
        let dir = tempfile::Builder::new()
            .prefix("spamscope-pg")
            .tempdir()
            .unwrap();
        if is_root() {
            let uid = users_id("postgres");
            std::os::unix::fs::chown(dir.path(), Some(uid.0), Some(uid.1)).unwrap();
        }
        let data = dir.path().join("data");
        let out = as_server_user(&bin.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
                "--locale=C",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut pg = TempPg { dir, bin, port: 0 };
        pg.port = free_port();
        pg.start_again();
        let out = Command::new(pg.bin.join("psql"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &pg.port.to_string(),
                "-U",
                "postgres",
                "-qc",
            ])
            .arg("CREATE DATABASE spamscope")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "createdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        pg
    }

    /// A registry on this server, with its own local cache.
    pub fn registry(&self, cache: &Path) -> spamscope::store::Registry {
        spamscope::store::Registry::open_at(&spamscope::store::location::Location::Postgres {
            url: self.url(),
            cache: cache.to_path_buf(),
        })
        .unwrap()
    }

    /// `postgres://postgres@127.0.0.1:PORT/spamscope`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/spamscope", self.port)
    }

    /// Starts the server (again, after [`TempPg::stop`]) and waits until it answers.
    pub fn start_again(&self) {
        let data = self.dir.path().join("data");
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=300",
            self.port,
            self.dir.path().display()
        );
        let out = as_server_user(&self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(&data)
            .args(["-o", &opts, "-l"])
            .arg(self.dir.path().join("server.log"))
            .args(["-w", "-t", "60", "start"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pg_ctl start failed: {}{}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
        );
    }

    /// Stops the server at once (as a crash would: `-m immediate`).
    pub fn stop(&self) {
        let _ = as_server_user(&self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-m", "immediate", "-w", "stop"])
            .output();
    }

    /// Runs SQL with psql; its output.
    pub fn psql(&self, sql: &str) -> String {
        let out = Command::new(self.bin.join("psql"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
            ])
            .args(["-d", "spamscope", "-qAtc", sql])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "psql {sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl TempPg {
    /// Turns TLS on (a server certificate for `san`, e.g. `DNS:db.internal`, signed by
    /// a new authority) and refuses connections without it; returns the authority's
    /// certificate (PEM).
    pub fn require_tls(&self, san: &str) -> PathBuf {
        let dir = self.dir.path().join("tls");
        std::fs::create_dir_all(&dir).unwrap();
        let openssl = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(&dir)
                .output()
                .expect("openssl");
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=spamscope test CA",
        ]);
        openssl(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=db",
        ]);
        std::fs::write(dir.join("ext.cnf"), format!("subjectAltName={san}\n")).unwrap();
        openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ]);
        let data = self.dir.path().join("data");
        for f in ["server.pem", "server.key"] {
            std::fs::copy(dir.join(f), data.join(f)).unwrap();
            if is_root() {
                let uid = users_id("postgres");
                std::os::unix::fs::chown(data.join(f), Some(uid.0), Some(uid.1)).unwrap();
            }
        }
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            data.join("server.key"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        let mut conf = std::fs::read_to_string(data.join("postgresql.conf")).unwrap();
        conf.push_str("\nssl = on\nssl_cert_file = 'server.pem'\nssl_key_file = 'server.key'\n");
        std::fs::write(data.join("postgresql.conf"), conf).unwrap();
        std::fs::write(
            data.join("pg_hba.conf"),
            "local all all trust\n\
             hostssl all all 127.0.0.1/32 trust\n\
             hostnossl all all 127.0.0.1/32 reject\n",
        )
        .unwrap();
        let out = as_server_user(&self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(&data)
            .args(["-w", "reload"])
            .output()
            .unwrap();
        assert!(out.status.success(), "reload: {out:?}");
        // The reload is applied by the postmaster shortly after: wait for TLS to be on.
        let start = std::time::Instant::now();
        while self.psql("SHOW ssl") != "on" {
            assert!(start.elapsed().as_secs() < 20, "TLS did not come on");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        dir.join("ca.pem")
    }
}

impl Drop for TempPg {
    fn drop(&mut self) {
        self.stop();
    }
}

/// (uid, gid) of a user, from /etc/passwd.
fn users_id(name: &str) -> (u32, u32) {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    for line in passwd.lines() {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() > 3 && f[0] == name {
            return (f[2].parse().unwrap(), f[3].parse().unwrap());
        }
    }
    panic!("no user {name}: the postgresql package creates it");
}
