//! Kubernetes resource quantities (`500m`, `2`, `32Gi`, `1e3`) as integers, and a small
//! resource-list type the scheduler adds up.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// Parses a quantity into milli-units (`"500m"` → 500, `"2"` → 2000, `"1Gi"` → 1 GiB × 1000).
///
/// Returns `None` for text that is not a quantity. Values saturate instead of overflowing.
pub(crate) fn parse_milli(text: &str) -> Option<i128> {
    let s = text.trim();
    if s.is_empty() {
        return None;
    }
    let (sign, s) = match s.strip_prefix('-') {
        Some(rest) => (-1i128, rest),
        None => (1i128, s.strip_prefix('+').unwrap_or(s)),
    };
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(split);
    if number.is_empty() || number == "." || number.matches('.').count() > 1 {
        return None;
    }
    // Multiplier of the suffix, as (numerator, power of ten) on milli-units.
    let (mul, exp10): (i128, i32) = match suffix {
        "" => (1, 3),
        "n" => (1, -6),
        "u" => (1, -3),
        "m" => (1, 0),
        "k" => (1, 6),
        "M" => (1, 9),
        "G" => (1, 12),
        "T" => (1, 15),
        "P" => (1, 18),
        "E" => (1, 21),
        "Ki" => (1 << 10, 3),
        "Mi" => (1 << 20, 3),
        "Gi" => (1 << 30, 3),
        "Ti" => (1 << 40, 3),
        "Pi" => (1 << 50, 3),
        "Ei" => (1 << 60, 3),
        other => {
            let exp = other
                .strip_prefix('e')
                .or_else(|| other.strip_prefix('E'))?;
            let exp: i32 = exp.parse().ok()?;
            if !(-30..=30).contains(&exp) {
                return None;
            }
            (1, exp + 3)
        }
    };
    let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
    let digits = format!("{int_part}{frac_part}");
    let digits = digits.trim_start_matches('0');
    let mut value: i128 = if digits.is_empty() {
        0
    } else {
        if digits.len() > 30 {
            return None;
        }
        digits.parse().ok()?
    };
    let exp = exp10 - frac_part.len() as i32;
    value = value.saturating_mul(mul);
    if exp >= 0 {
        value = value.saturating_mul(10i128.saturating_pow(exp as u32));
    } else {
        // Round up, as Kubernetes does when a quantity is finer than its scale.
        let div = 10i128.saturating_pow((-exp) as u32);
        value = value.saturating_add(div - 1) / div;
    }
    Some(sign * value)
}

/// A set of resource amounts in milli-units, keyed by resource name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Resources(pub(crate) BTreeMap<String, i128>);

impl Resources {
    /// Resources from a Kubernetes resource list (`{"cpu": "500m", ...}`); entries that
    /// do not parse are ignored.
    pub(crate) fn from_quantities(list: Option<&BTreeMap<String, Quantity>>) -> Self {
        let mut out = BTreeMap::new();
        for (k, v) in list.into_iter().flatten() {
            if let Some(q) = parse_milli(&v.0) {
                out.insert(k.clone(), q);
            }
        }
        Self(out)
    }

    /// The amount of one resource (0 when absent).
    pub(crate) fn get(&self, name: &str) -> i128 {
        self.0.get(name).copied().unwrap_or(0)
    }

    /// Adds another set to this one.
    pub(crate) fn add(&mut self, other: &Resources) {
        for (k, v) in &other.0 {
            let e = self.0.entry(k.clone()).or_insert(0);
            *e = e.saturating_add(*v);
        }
    }

    /// Raises each resource to at least the other set's amount.
    pub(crate) fn max_with(&mut self, other: &Resources) {
        for (k, v) in &other.0 {
            let e = self.0.entry(k.clone()).or_insert(0);
            *e = (*e).max(*v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_common_quantities() {
        assert_eq!(parse_milli("500m"), Some(500));
        assert_eq!(parse_milli("2"), Some(2000));
        assert_eq!(parse_milli("0.5"), Some(500));
        assert_eq!(parse_milli("1Gi"), Some((1i128 << 30) * 1000));
        assert_eq!(parse_milli("32Gi"), Some((32i128 << 30) * 1000));
        assert_eq!(parse_milli("1M"), Some(1_000_000_000));
        assert_eq!(parse_milli("1e3"), Some(1_000_000));
        assert_eq!(parse_milli("1.5Mi"), Some(1_572_864_000));
        assert_eq!(parse_milli("4"), Some(4000));
    }

    #[test]
    fn rejects_garbage() {
        assert!(parse_milli("999999999999999999999999999999Ei").is_some());
        assert!(parse_milli("99999999999999999999999.9999999Ei").is_some());
        for bad in ["", "abc", "1x", "1..2", ".", "1e99", "Gi"] {
            assert_eq!(parse_milli(bad), None, "{bad}");
        }
    }

    #[test]
    fn adds_and_maxes() {
        let mut a = Resources::default();
        a.0.insert("cpu".into(), 500);
        let mut b = Resources::default();
        b.0.insert("cpu".into(), 700);
        b.0.insert("memory".into(), 10);
        let mut sum = a.clone();
        sum.add(&b);
        assert_eq!(sum.get("cpu"), 1200);
        a.max_with(&b);
        assert_eq!(a.get("cpu"), 700);
        assert_eq!(a.get("memory"), 10);
    }
}
