//! Secrets kept out of `Debug` output and error text.

use std::borrow::Cow;

/// `value` with the password of a URL's user info replaced by `***`
/// (`redis://app:s3cret@cache:6379/0` becomes `redis://app:***@cache:6379/0`,
/// and `redis://:s3cret@cache` becomes `redis://:***@cache`); user info with
/// no `:` is masked whole, as some schemes put a token there. Anything that
/// is not such a URL is returned as it is. For a backend's `Debug` and error
/// messages, which must never show a credential.
pub fn redact_url(value: &str) -> Cow<'_, str> {
    let Some(scheme_end) = value.find("://") else {
        return Cow::Borrowed(value);
    };
    let authority_start = scheme_end + 3;
    let authority_len = value[authority_start..]
        .find(['/', '?', '#'])
        .unwrap_or(value.len() - authority_start);
    let authority = &value[authority_start..authority_start + authority_len];
    let Some(at) = authority.rfind('@') else {
        return Cow::Borrowed(value);
    };
    let user_info = &authority[..at];
    let kept = match user_info.find(':') {
        Some(colon) => &user_info[..=colon],
        None => "",
    };
    Cow::Owned(format!(
        "{}{kept}***{}",
        &value[..authority_start],
        &value[authority_start + at..]
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_in_urls_are_masked_and_the_rest_kept() {
        for (given, shown) in [
            (
                "redis://app:s3cret@cache:6379/0",
                "redis://app:***@cache:6379/0",
            ),
            ("rediss://:s3cret@cache", "rediss://:***@cache"),
            ("redis://token@cache/1?x=y", "redis://***@cache/1?x=y"),
            ("redis://a:p@ss@host", "redis://a:***@host"),
            ("redis://cache:6379", "redis://cache:6379"),
            ("mc1:11211", "mc1:11211"),
            (
                "http://host/path@not-user-info",
                "http://host/path@not-user-info",
            ),
        ] {
            assert_eq!(redact_url(given), shown, "{given}");
        }
    }
}
