//! Kubernetes resource quantities (`128Mi`, `1.5G`, `100m`, `2e3`) parsed into exact milli-units.
//!
//! Written by hand: k8s-openapi keeps a quantity as its string and offers no arithmetic. Values are held as
//! `i128` thousandths so comparisons and divisibility checks (hugepages) are exact; parsing never panics.

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// A parsed quantity in thousandths of the base unit (bytes or cores).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Milli(pub i128);

/// The text does not follow the quantity grammar.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'")]
pub struct QuantityError;

const LIMIT: i128 = 1 << 100;

/// Parses a quantity string.
///
/// # Errors
/// [`QuantityError`] for anything outside the grammar or absurdly large.
pub fn parse(text: &str) -> Result<Milli, QuantityError> {
    let s = text.trim();
    let (neg, s) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, suffix) = s.split_at(split);
    if num.is_empty() || num == "." || num.matches('.').count() > 1 {
        return Err(QuantityError);
    }
    let (int_part, frac_part) = num.split_once('.').unwrap_or((num, ""));
    // value = digits * 10^(exp10) * 2^(exp2), computed in thousandths.
    let digits: String = format!("{int_part}{frac_part}");
    if digits.len() > 30 {
        return Err(QuantityError);
    }
    let mantissa: i128 = if digits.is_empty() {
        0
    } else {
        digits.parse().map_err(|_| QuantityError)?
    };
    let mut exp10: i32 = -(frac_part.len() as i32) + 3;
    let mut exp2: u32 = 0;
    match suffix {
        "" => {}
        "m" => exp10 -= 3,
        "k" => exp10 += 3,
        "M" => exp10 += 6,
        "G" => exp10 += 9,
        "T" => exp10 += 12,
        "P" => exp10 += 15,
        "E" => exp10 += 18,
        "Ki" => exp2 = 10,
        "Mi" => exp2 = 20,
        "Gi" => exp2 = 30,
        "Ti" => exp2 = 40,
        "Pi" => exp2 = 50,
        "Ei" => exp2 = 60,
        other => {
            let exp = other.strip_prefix(['e', 'E']).ok_or(QuantityError)?;
            let e: i32 = exp.parse().map_err(|_| QuantityError)?;
            if !(-30..=30).contains(&e) {
                return Err(QuantityError);
            }
            exp10 += e;
        }
    }
    let mut v = mantissa.checked_mul(1i128 << exp2).ok_or(QuantityError)?;
    if exp10 >= 0 {
        v = v
            .checked_mul(10i128.checked_pow(exp10.unsigned_abs()).ok_or(QuantityError)?)
            .ok_or(QuantityError)?;
    } else {
        let d = 10i128.checked_pow(exp10.unsigned_abs()).ok_or(QuantityError)?;
        // Round up, as Kubernetes does for sub-milli precision.
        v = (v + d - 1) / d;
    }
    if v > LIMIT {
        return Err(QuantityError);
    }
    Ok(Milli(if neg { -v } else { v }))
}

impl Milli {
    /// The whole-unit value, rounded up (Kubernetes' `Quantity.Value()`).
    #[must_use]
    pub fn value(self) -> i128 {
        if self.0 >= 0 {
            (self.0 + 999) / 1000
        } else {
            self.0 / 1000
        }
    }
    /// Whether the quantity is a whole number of units.
    #[must_use]
    pub fn is_whole(self) -> bool {
        self.0 % 1000 == 0
    }
}

/// Parses an optional k8s-openapi quantity; `None` when absent.
///
/// # Errors
/// [`QuantityError`] when present but malformed.
pub fn of(q: Option<&Quantity>) -> Result<Option<Milli>, QuantityError> {
    q.map(|q| parse(&q.0)).transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_usual_forms() {
        assert_eq!(parse("128Mi"), Ok(Milli(128 * 1024 * 1024 * 1000)));
        assert_eq!(parse("1M"), Ok(Milli(1_000_000_000)));
        assert_eq!(parse("100m"), Ok(Milli(100)));
        assert_eq!(parse("2"), Ok(Milli(2000)));
        assert_eq!(parse("1.5Gi").map(Milli::value), Ok(1536 * 1024 * 1024));
        assert_eq!(parse("1e3"), Ok(Milli(1_000_000)));
        assert_eq!(parse("-1Gi").map(|m| m.0 < 0), Ok(true));
        assert_eq!(parse("500m").map(Milli::value), Ok(1));
    }

    #[test]
    fn rejects_garbage_without_panicking() {
        for bad in [
            "",
            "Mi",
            "1.2.3",
            "12Xi",
            "1e999",
            "99999999999999999999999999999999999Ei",
            "abc",
            "--1",
            ".",
        ] {
            assert_eq!(parse(bad), Err(QuantityError), "{bad}");
        }
    }
}
