//! Numbers written in free text: scanning, canonical form and comparison.
//!
//! A number is an optional sign (`-` or U+2212 minus), an optional `$`, digits
//! with optional thousands separators (`1,200`: a comma followed by exactly
//! three digits), and an optional fraction (`.5`). A sign counts only when no
//! letter or digit comes right before it, so `10-3` reads as 10 and 3 while
//! `= -3` reads as -3. A trailing `.` ends a sentence and is not part of the
//! number. Exponents are not read.

/// The tolerance of [`numbers_equal`], absolute up to magnitude 1 and
/// relative above.
pub const TOLERANCE: f64 = 1e-6;

const UNICODE_MINUS: &[u8] = "\u{2212}".as_bytes();

/// One number found in a text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct NumberMatch {
    /// The canonical form (see [`canonical`]).
    pub(crate) canonical: String,
    /// The byte offset of the first char, the sign or `$` included.
    pub(crate) start: usize,
    /// The byte offset just past the last digit.
    pub(crate) end: usize,
}

/// Finds every number in `text`, left to right.
pub(crate) fn scan(text: &str) -> Vec<NumberMatch> {
    // Every byte compared here is ASCII, and no byte of a multi-byte UTF-8
    // char is ASCII, so scanning bytes cannot split a char.
    let bytes = text.as_bytes();
    let mut numbers = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let starts_fraction = bytes[i] == b'.'
            && is_digit_at(bytes, i + 1)
            && (i == 0 || !bytes[i - 1].is_ascii_digit());
        if !bytes[i].is_ascii_digit() && !starts_fraction {
            i += 1;
            continue;
        }
        let number = read_number(bytes, i);
        i = number.end;
        numbers.push(number);
    }
    numbers
}

/// Returns the canonical form of a text that is exactly one number, with
/// optional surrounding whitespace and one trailing `.`, or `None`.
pub fn canonical_number(text: &str) -> Option<String> {
    let text = text.trim();
    let text = text.strip_suffix('.').unwrap_or(text);
    match scan(text).as_slice() {
        [only] if only.start == 0 && only.end == text.len() => Some(only.canonical.clone()),
        _ => None,
    }
}

/// Returns whether two canonical numbers are equal within [`TOLERANCE`].
pub fn numbers_equal(left: &str, right: &str) -> bool {
    let (Ok(left), Ok(right)) = (left.parse::<f64>(), right.parse::<f64>()) else {
        return false;
    };
    let scale = left.abs().max(right.abs()).max(1.0);
    (left - right).abs() <= TOLERANCE * scale
}

/// Reads the number whose first digit, or fraction point, is at `first`.
fn read_number(bytes: &[u8], first: usize) -> NumberMatch {
    let mut end = first;
    let mut integer = String::new();
    while is_digit_at(bytes, end) {
        integer.push(bytes[end] as char);
        end += 1;
    }
    while bytes.get(end) == Some(&b',')
        && (1..=3).all(|k| is_digit_at(bytes, end + k))
        && !is_digit_at(bytes, end + 4)
    {
        integer.extend(bytes[end + 1..end + 4].iter().map(|&byte| byte as char));
        end += 4;
    }
    let mut fraction = String::new();
    if bytes.get(end) == Some(&b'.') && is_digit_at(bytes, end + 1) {
        end += 1;
        while is_digit_at(bytes, end) {
            fraction.push(bytes[end] as char);
            end += 1;
        }
    }

    let (start, negative) = read_prefix(bytes, first);
    NumberMatch {
        canonical: canonical(negative, &integer, &fraction),
        start,
        end,
    }
}

/// Reads the `$` and sign, in either order, before the first digit. Returns
/// the start of the number and whether it is negative.
fn read_prefix(bytes: &[u8], first: usize) -> (usize, bool) {
    let mut start = first;
    let mut negative = false;
    let mut dollar = false;
    loop {
        if !dollar && start > 0 && bytes[start - 1] == b'$' {
            dollar = true;
            start -= 1;
        } else if !negative
            && start > 0
            && bytes[start - 1] == b'-'
            && sign_allowed(bytes, start - 1)
        {
            negative = true;
            start -= 1;
        } else if !negative
            && bytes[..start].ends_with(UNICODE_MINUS)
            && sign_allowed(bytes, start - UNICODE_MINUS.len())
        {
            negative = true;
            start -= UNICODE_MINUS.len();
        } else {
            return (start, negative);
        }
    }
}

/// Returns whether a sign at `at` counts, which it does unless a letter or
/// digit comes right before it.
fn sign_allowed(bytes: &[u8], at: usize) -> bool {
    at == 0 || !bytes[at - 1].is_ascii_alphanumeric()
}

fn is_digit_at(bytes: &[u8], at: usize) -> bool {
    bytes.get(at).is_some_and(u8::is_ascii_digit)
}

/// Writes a number without leading zeros in the integer part, trailing zeros
/// in the fraction, or a sign on zero: `-007.50` becomes `-7.5`.
fn canonical(negative: bool, integer: &str, fraction: &str) -> String {
    let integer = integer.trim_start_matches('0');
    let fraction = fraction.trim_end_matches('0');
    let is_zero = integer.is_empty() && fraction.is_empty();
    let mut text = String::with_capacity(integer.len() + fraction.len() + 3);
    if negative && !is_zero {
        text.push('-');
    }
    text.push_str(if integer.is_empty() { "0" } else { integer });
    if !fraction.is_empty() {
        text.push('.');
        text.push_str(fraction);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canonicals(text: &str) -> Vec<String> {
        scan(text)
            .into_iter()
            .map(|number| number.canonical)
            .collect()
    }

    #[test]
    fn scan_reads_signs_separators_and_fractions() {
        let cases: &[(&str, &[&str])] = &[
            ("she has 12 apples", &["12"]),
            ("it costs $1,200.50.", &["1200.5"]),
            ("-7 and -$3 and $-4", &["-7", "-3", "-4"]),
            ("10-3=7", &["10", "3", "7"]),
            ("x = \u{2212}5", &["-5"]),
            ("COVID-19", &["19"]),
            ("1, 2, 3", &["1", "2", "3"]),
            ("12,34", &["12", "34"]),
            ("1,234,567 people", &["1234567"]),
            ("007.500", &["7.5"]),
            (".5 of it", &["0.5"]),
            ("3.14.15", &["3.14", "15"]),
            ("-0", &["0"]),
            ("<<48/2=24>>24", &["48", "2", "24", "24"]),
            ("no numbers here", &[]),
        ];
        for (text, expected) in cases {
            assert_eq!(canonicals(text), *expected, "{text:?}");
        }
    }

    #[test]
    fn scan_offsets_cover_prefix() {
        let numbers = scan("pay -$5 now");
        assert_eq!(numbers.len(), 1);
        assert_eq!(numbers[0].start, 4);
        assert_eq!(numbers[0].end, 7);
    }

    #[test]
    fn canonical_number_requires_whole_text() {
        assert_eq!(canonical_number(" 1,080 ").as_deref(), Some("1080"));
        assert_eq!(canonical_number("$1,200.50").as_deref(), Some("1200.5"));
        assert_eq!(canonical_number("-7.").as_deref(), Some("-7"));
        assert_eq!(canonical_number("12 apples"), None);
        assert_eq!(canonical_number("4 5"), None);
        assert_eq!(canonical_number(""), None);
        assert_eq!(canonical_number("four"), None);
    }

    #[test]
    fn numbers_compared_with_tolerance() {
        assert!(numbers_equal("0.5", "0.5000001"));
        assert!(!numbers_equal("0.5", "0.50001"));
        assert!(numbers_equal("1000000000", "1000000001"));
        assert!(!numbers_equal("-3", "3"));
        assert!(!numbers_equal("x", "x"));
    }
}
