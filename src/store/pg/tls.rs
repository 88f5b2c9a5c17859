//! TLS to the database, as libpq's `sslmode` means it, so a URL that works with `psql`
//! works here: `disable` (never), `prefer` (the default: encrypted when the server
//! offers it, the certificate not checked), `require` (encrypted, not checked),
//! `verify-ca` (the certificate signed by a trusted authority) and `verify-full` (and
//! naming the host). The authorities are `sslrootcert=FILE` (PEM) when given, else the
//! public web roots. rustls with ring: no C library to build or link.

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};
use std::path::PathBuf;
use std::sync::Arc;

/// libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

/// What the URL asks of TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    pub mode: Mode,
    pub root_cert: Option<PathBuf>,
}

/// Takes `sslmode` and `sslrootcert` out of `url`'s query (the client library knows
/// only some of libpq's modes); returns the rest of the URL and what they asked.
pub fn split(url: &str) -> Result<(String, Options), String> {
    let mut opts = Options {
        mode: Mode::Prefer,
        root_cert: None,
    };
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_string(), opts));
    };
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "sslmode" => {
                opts.mode = match v {
                    "disable" => Mode::Disable,
                    "allow" | "prefer" => Mode::Prefer,
                    "require" => Mode::Require,
                    "verify-ca" => Mode::VerifyCa,
                    "verify-full" => Mode::VerifyFull,
                    other => {
                        return Err(format!(
                            "sslmode {} is not one of disable, prefer, require, verify-ca, verify-full",
                            crate::util::text::quote(other)
                        ));
                    }
                }
            }
            "sslrootcert" => opts.root_cert = Some(PathBuf::from(percent_decode(v))),
            _ => kept.push(pair),
        }
    }
    let rest = if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok((rest, opts))
}

/// `%2F` and the like in a query value (a file path), as a URL carries them.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(h) = s.get(i + 1..i + 3)
            && let Ok(b) = u8::from_str_radix(h, 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The client library's mode for `mode` (its `require` for every encrypted mode: the
/// checking is done by the connector).
pub fn library_mode(mode: Mode) -> postgres::config::SslMode {
    use postgres::config::SslMode;
    match mode {
        Mode::Disable => SslMode::Disable,
        Mode::Prefer => SslMode::Prefer,
        Mode::Require | Mode::VerifyCa | Mode::VerifyFull => SslMode::Require,
    }
}

/// The connector for `opts`. A root certificate file that cannot be read or holds no
/// certificate is an error naming it.
pub fn connector(opts: &Options) -> Result<tokio_postgres_rustls::MakeRustlsConnect, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let checked = matches!(opts.mode, Mode::VerifyCa | Mode::VerifyFull);
    let inner = if checked || opts.root_cert.is_some() {
        let mut roots = rustls::RootCertStore::empty();
        match &opts.root_cert {
            Some(path) => {
                let shown = path.display();
                let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                    .map_err(|e| format!("sslrootcert {shown}: {e}"))?
                    .collect::<Result<_, _>>()
                    .map_err(|e| format!("sslrootcert {shown}: {e}"))?;
                if certs.is_empty() {
                    return Err(format!("sslrootcert {shown}: no PEM certificate in it"));
                }
                for c in certs {
                    roots
                        .add(c)
                        .map_err(|e| format!("sslrootcert {shown}: {e}"))?;
                }
            }
            None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        }
        Some(
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .map_err(|e| format!("TLS: {e}"))?,
        )
    } else {
        None
    };
    let verifier = Verifier {
        // libpq checks nothing below verify-ca, even with a root certificate given.
        inner: inner.filter(|_| checked),
        check_name: opts.mode == Mode::VerifyFull,
        provider: provider.clone(),
    };
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

/// The server's certificate checked as the mode says; the handshake's signatures always.
#[derive(Debug)]
struct Verifier {
    /// None: the certificate is not checked (prefer, require).
    inner: Option<Arc<WebPkiServerVerifier>>,
    /// verify-full: the certificate must name the host.
    check_name: bool,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(inner) = &self.inner else {
            return Ok(ServerCertVerified::assertion());
        };
        match inner.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if !self.check_name => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssl_options_leave_the_url_and_bad_ones_are_named() {
        let (rest, o) = split(
            "postgres://u:p@db:5432/s?sslmode=verify-full&application_name=x&sslrootcert=%2Fetc%2Fca.pem",
        )
        .unwrap();
        assert_eq!(rest, "postgres://u:p@db:5432/s?application_name=x");
        assert_eq!(o.mode, Mode::VerifyFull);
        assert_eq!(o.root_cert, Some(PathBuf::from("/etc/ca.pem")));
        let (rest, o) = split("postgres://db/s").unwrap();
        assert_eq!((rest.as_str(), o.mode), ("postgres://db/s", Mode::Prefer));
        let (rest, o) = split("postgres://db/s?sslmode=disable").unwrap();
        assert_eq!((rest.as_str(), o.mode), ("postgres://db/s", Mode::Disable));
        let err = split("postgres://db/s?sslmode=sometimes").unwrap_err();
        assert!(err.contains("sslmode \"sometimes\""), "{err}");
        let err = connector(&Options {
            mode: Mode::VerifyCa,
            root_cert: Some("/nonexistent/ca.pem".into()),
        })
        .err()
        .unwrap();
        assert!(err.starts_with("sslrootcert /nonexistent/ca.pem"), "{err}");
    }
}
