//! The tenant that key derivation and every AAD are bound to.

use super::error::{EncryptionError, EncryptionErrorKind};

/// The tenant of a deployment: `"default"` without a deployment UUID, or the
/// UUID itself, which interop mode requires in canonical form (lowercase,
/// hyphenated, 8-4-4-4-12 hex digits) since the Python SDK hashes it as text.
#[doc(hidden)]
pub fn tenant_of(deployment_uuid: Option<&str>) -> Result<String, EncryptionError> {
    match deployment_uuid {
        None => Ok("default".to_owned()),
        Some(uuid) if is_canonical_uuid(uuid) => Ok(uuid.to_owned()),
        // The value is not echoed: a misplaced secret must not reach a log.
        Some(uuid) => Err(EncryptionError::new(
            EncryptionErrorKind::InvalidTenant,
            format!(
                "the deployment UUID ({} characters) is not a canonical UUID: interop mode \
                 needs 8-4-4-4-12 lowercase hex digits with hyphens, like \
                 123e4567-e89b-12d3-a456-426614174000; write it in that form",
                uuid.chars().count()
            ),
        )),
    }
}

/// Whether `text` is a lowercase hyphenated UUID (8-4-4-4-12 hex digits).
fn is_canonical_uuid(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.len() == 36
        && bytes.iter().enumerate().all(|(at, &byte)| match at {
            8 | 13 | 18 | 23 => byte == b'-',
            _ => byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_uuid_is_the_default_tenant() {
        assert_eq!(tenant_of(None).unwrap(), "default");
    }

    #[test]
    fn a_canonical_uuid_is_its_own_tenant() {
        let uuid = "123e4567-e89b-12d3-a456-426614174000";
        assert_eq!(tenant_of(Some(uuid)).unwrap(), uuid);
    }

    #[test]
    fn other_forms_are_refused() {
        for given in [
            "123E4567-E89B-12D3-A456-426614174000",
            "123e4567e89b12d3a456426614174000",
            "{123e4567-e89b-12d3-a456-426614174000}",
            " 123e4567-e89b-12d3-a456-426614174000",
            "123e4567-e89b-12d3-a456-42661417400g",
            "123e4567-e89b-12d3-a4560426614174000",
            "",
            "default",
        ] {
            let error = tenant_of(Some(given)).unwrap_err();
            assert_eq!(error.kind(), EncryptionErrorKind::InvalidTenant, "{given}");
            assert!(error.to_string().contains("canonical"), "{error}");
        }
    }
}
