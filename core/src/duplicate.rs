//! Duplicate-customer detection: the same phone, email or normalised company name.

use serde::{Deserialize, Serialize};

/// An existing client that looks like the same customer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DuplicateMatch {
    /// The existing client.
    pub client_id: String,
    /// Its display name.
    pub name: String,
    /// Its owner.
    pub owner: String,
    /// `phone`, `email` or `company`.
    pub matched_on: String,
}

/// Digits only, without a leading +86 / 0086 country code: `+86 138-0013-8000` and
/// `13800138000` are the same phone.
pub fn normalize_phone(phone: &str) -> Option<String> {
    let digits: String = phone.chars().filter(char::is_ascii_digit).collect();
    let digits = digits
        .strip_prefix("0086")
        .or_else(|| digits.strip_prefix("86").filter(|d| d.len() == 11))
        .unwrap_or(&digits);
    (digits.len() >= 5).then(|| digits.to_string())
}

/// Lowercase, trimmed email.
pub fn normalize_email(email: &str) -> Option<String> {
    let e = email.trim().to_lowercase();
    e.contains('@').then_some(e)
}

/// Company name without case, spaces, punctuation and legal-form suffixes, so that
/// `深圳华强科技有限公司` and `深圳华强科技` match, and so do `Acme Co., Ltd.` and `ACME`.
pub fn normalize_company(company: &str) -> Option<String> {
    let mut s: String = company
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric())
        .collect();
    const SUFFIXES: &[&str] = &[
        "股份有限公司",
        "有限责任公司",
        "有限公司",
        "集团",
        "公司",
        "coltd",
        "ltd",
        "limited",
        "inc",
        "corporation",
        "corp",
        "gmbh",
        "llc",
        "co",
    ];
    loop {
        let before = s.len();
        for suffix in SUFFIXES {
            if s.len() > suffix.len() {
                if let Some(stripped) = s.strip_suffix(suffix) {
                    s = stripped.to_string();
                }
            }
        }
        if s.len() == before {
            break;
        }
    }
    (!s.is_empty()).then_some(s)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn phones_match_with_or_without_country_code_and_separators() {
        assert_eq!(
            normalize_phone("+86 138-0013-8000"),
            normalize_phone("13800138000")
        );
        assert_eq!(normalize_phone("abc"), None);
    }

    #[test]
    fn company_names_match_without_legal_form_suffixes() {
        assert_eq!(
            normalize_company("深圳华强科技有限公司"),
            normalize_company("深圳华强科技")
        );
        assert_eq!(
            normalize_company("Acme Co., Ltd."),
            normalize_company("ACME")
        );
        assert_ne!(normalize_company("Acme"), normalize_company("Acne"));
    }

    #[test]
    fn emails_match_ignoring_case() {
        assert_eq!(
            normalize_email(" Li@Example.com"),
            normalize_email("li@example.com")
        );
        assert_eq!(normalize_email("not-an-email"), None);
    }
}
