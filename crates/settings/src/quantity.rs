//! Kubernetes resource quantities: syntax check, numeric value, YAML-number normalisation.
//!
//! k8s-openapi's `Quantity` is a plain string wrapper, so a typo such as `4GB` (Kubernetes
//! wants `4G` or `4Gi`) would only be rejected by the API server. This module implements
//! the grammar of `k8s.io/apimachinery/pkg/api/resource`:
//! `<sign><digits>[.<digits>]<suffix>` with the suffixes `Ki Mi Gi Ti Pi Ei`,
//! `n u m "" k M G T P E`, or a decimal exponent `e<n>` / `E<n>`.

use std::fmt;

/// A parsed resource quantity (value as a floating-point number of base units).
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct ParsedQuantity(f64);

impl ParsedQuantity {
    /// The value in base units (cores, bytes, devices).
    pub fn value(self) -> f64 {
        self.0
    }
}

/// Why a string is not a quantity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuantityError {
    reason: &'static str,
}

impl fmt::Display for QuantityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason)
    }
}

impl std::error::Error for QuantityError {}

fn err(reason: &'static str) -> QuantityError {
    QuantityError { reason }
}

/// Parses a Kubernetes quantity such as `500m`, `2`, `1.5Gi` or `1e3`.
pub fn parse_quantity(s: &str) -> Result<ParsedQuantity, QuantityError> {
    if s.is_empty() {
        return Err(err("is empty"));
    }
    let (sign, rest) = match s.as_bytes()[0] {
        b'+' => (1.0, &s[1..]),
        b'-' => (-1.0, &s[1..]),
        _ => (1.0, s),
    };
    let number_len = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    let (number, suffix) = rest.split_at(number_len);
    if number.is_empty() || number == "." || number.matches('.').count() > 1 {
        return Err(err("must start with a number"));
    }
    let base: f64 = number
        .parse()
        .map_err(|_| err("must start with a number"))?;
    let multiplier = match suffix {
        "" => 1.0,
        "Ki" => 1024f64,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        other => {
            let exponent = other
                .strip_prefix('e')
                .or_else(|| other.strip_prefix('E'))
                .ok_or_else(|| err(UNIT_HELP))?;
            let digits = exponent.strip_prefix(['+', '-']).unwrap_or(exponent);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(err(UNIT_HELP));
            }
            let exp: i32 = exponent.parse().map_err(|_| err(UNIT_HELP))?;
            10f64.powi(exp)
        }
    };
    let value = sign * base * multiplier;
    // Kubernetes caps quantities at 2^63-1 (in their base unit).
    if !value.is_finite() || value.abs() > i64::MAX as f64 {
        return Err(err("is too large (at most 2^63-1)"));
    }
    Ok(ParsedQuantity(value))
}

const UNIT_HELP: &str = "has an unknown unit; use one of n, u, m, k, M, G, T, P, E, Ki, Mi, Gi, Ti, Pi, Ei or an exponent such as 1e3";

/// Renders a YAML/JSON number as a quantity string (`2` → `"2"`, `0.5` → `"0.5"`).
pub fn number_to_quantity(n: &serde_json::Number) -> String {
    if let Some(i) = n.as_i64() {
        i.to_string()
    } else if let Some(u) = n.as_u64() {
        u.to_string()
    } else {
        let f = n.as_f64().unwrap_or_default();
        if f.fract() == 0.0 && f.abs() < 1e15 {
            format!("{f:.0}")
        } else {
            format!("{f}")
        }
    }
}

/// Converts a ZenML-style memory string (`4GB`, `512MiB`, `1KB`, `100B`) or a Kubernetes
/// quantity (`4Gi`, `400Mi`) into a Kubernetes quantity string.
pub fn memory_to_quantity(s: &str) -> Result<String, QuantityError> {
    let trimmed = s.trim();
    let number_len = trimmed
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(number_len);
    let unit = match unit.trim() {
        "B" => Some(""),
        "KB" => Some("k"),
        "MB" => Some("M"),
        "GB" => Some("G"),
        "TB" => Some("T"),
        "PB" => Some("P"),
        "KiB" => Some("Ki"),
        "MiB" => Some("Mi"),
        "GiB" => Some("Gi"),
        "TiB" => Some("Ti"),
        "PiB" => Some("Pi"),
        _ => None,
    };
    let candidate = match unit {
        Some(unit) => format!("{number}{unit}"),
        None => trimmed.to_string(),
    };
    parse_quantity(&candidate)?;
    Ok(candidate)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_kubernetes_forms() {
        for (s, v) in [
            ("2", 2.0),
            ("500m", 0.5),
            ("1.5", 1.5),
            ("1Gi", 1024f64.powi(3)),
            ("1024Mi", 1024f64.powi(3)),
            ("2G", 2e9),
            ("1e3", 1000.0),
            ("1E-3", 0.001),
            ("+1k", 1000.0),
            (".5", 0.5),
            ("5.", 5.0),
        ] {
            assert_eq!(parse_quantity(s).map(ParsedQuantity::value), Ok(v), "{s}");
        }
    }

    #[test]
    fn rejects_bad_forms() {
        for s in [
            "", "Gi", "1GB", "1 Gi", "abc", "1..2", "1e", "1ee3", "--1", ".", "1e400", "9Ei",
        ] {
            assert!(parse_quantity(s).is_err(), "{s}");
        }
        assert_eq!(parse_quantity("4GB").unwrap_err().to_string(), UNIT_HELP);
    }

    #[test]
    fn numbers_and_memory_strings_normalise() {
        assert_eq!(number_to_quantity(&serde_json::Number::from(2)), "2");
        let half = serde_json::Number::from_f64(0.5).unwrap();
        assert_eq!(number_to_quantity(&half), "0.5");
        let two = serde_json::Number::from_f64(2.0).unwrap();
        assert_eq!(number_to_quantity(&two), "2");
        assert_eq!(memory_to_quantity("4GB").unwrap(), "4G");
        assert_eq!(memory_to_quantity("512MiB").unwrap(), "512Mi");
        assert_eq!(memory_to_quantity("4Gi").unwrap(), "4Gi");
        assert!(memory_to_quantity("4 parsecs").is_err());
    }
}
