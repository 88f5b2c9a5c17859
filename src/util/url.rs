//! Checking a URL given in settings or on the command line (a webhook's, an MLflow
//! server's): http or https, with a host.

/// Why a webhook URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("webhook URL must start with http:// or https:// (got {0})")]
    Scheme(String),
    #[error("webhook URL is not a valid URL with a host (got {0})")]
    Invalid(String),
}

/// Checks a webhook URL: http or https, with a host ([`check_http_url`]; its errors
/// name the webhook).
pub fn check_webhook_url(url: &str) -> Result<(), UrlError> {
    check_http_url(url)
}

/// Checks a URL given in settings or on the command line (a webhook's, an MLflow
/// server's): http or https (any case), with a host.
pub fn check_http_url(url: &str) -> Result<(), UrlError> {
    let quoted = || crate::util::text::quote(url);
    let lower = url.trim().to_ascii_lowercase();
    if !(lower.starts_with("http://") || lower.starts_with("https://")) {
        return Err(UrlError::Scheme(quoted()));
    }
    match url.trim().parse::<ureq::http::Uri>() {
        Ok(u) if u.host().is_some_and(|h| !h.is_empty()) => Ok(()),
        _ => Err(UrlError::Invalid(quoted())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_http_or_https_with_a_host() {
        check_webhook_url("http://127.0.0.1:9000/hook").unwrap();
        check_webhook_url("https://hooks.example.com/x?y=1").unwrap();
        for bad in [
            "ftp://x/",
            "hooks.example.com",
            "",
            "http://",
            "file:///etc/passwd",
        ] {
            let e = check_webhook_url(bad).unwrap_err().to_string();
            assert!(!e.contains('\n') && e.contains("webhook URL"), "{e}");
        }
        let long = format!("gopher://{}", "a".repeat(500));
        assert!(check_webhook_url(&long).unwrap_err().to_string().len() < 200);
    }
}
