//! Number parsing in the forms models write them: `1,234`, `$5`, `-3.5`,
//! `42.` at the end of a sentence.

/// Returns the numbers in `text` in order of appearance. A number is an
/// optional `-`, digits that may contain `,` between digits, and an
/// optional fraction `.digits`; `$` and commas are stripped.
fn numbers(text: &str) -> Vec<f64> {
    let chars: Vec<char> = text.chars().collect();
    let mut found = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let starts_number = chars[i].is_ascii_digit()
            || (chars[i] == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit));
        if !starts_number {
            i += 1;
            continue;
        }

        // A `-` directly before the number (after an optional `$`) is its
        // sign, unless it follows a letter or digit as in `10-12` or `x-3`.
        let mut before = i;
        if before > 0 && chars[before - 1] == '$' {
            before -= 1;
        }
        let negative = before > 0
            && chars[before - 1] == '-'
            && (before == 1 || !chars[before - 2].is_alphanumeric());

        let mut digits = String::new();
        let mut seen_point = false;
        while i < chars.len() {
            let c = chars[i];
            let next_is_digit = chars.get(i + 1).is_some_and(char::is_ascii_digit);
            if c.is_ascii_digit() {
                digits.push(c);
            } else if c == ',' && next_is_digit && !seen_point {
                // A thousands separator: dropped.
            } else if c == '.' && next_is_digit && !seen_point {
                seen_point = true;
                digits.push('.');
            } else {
                break;
            }
            i += 1;
        }
        if let Ok(value) = digits.parse::<f64>() {
            found.push(if negative { -value } else { value });
        }
    }
    found
}

/// Returns the last number in `text`, if any.
pub fn last_number(text: &str) -> Option<f64> {
    numbers(text).pop()
}

/// Parses `text` as exactly one number, allowing surrounding whitespace,
/// `$`, commas, a trailing `.` and a unit-less `%`.
pub fn parse_number(text: &str) -> Option<f64> {
    let trimmed = text.trim().trim_end_matches(['.', '%']).trim();
    let found = numbers(trimmed);
    let rest: String = trimmed
        .chars()
        .filter(|c| !(c.is_ascii_digit() || matches!(c, ',' | '.' | '$' | '-')))
        .collect();
    if found.len() == 1 && rest.trim().is_empty() {
        Some(found[0])
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_number_cases() {
        let cases = [
            ("She has 3 apples and buys 4 more, so 7.", Some(7.0)),
            ("The total is $1,234.50 today", Some(1234.5)),
            ("It drops to -12 degrees", Some(-12.0)),
            ("costs $-5", Some(-5.0)),
            ("about .5 of 2.75.", Some(2.75)),
            ("a well-known 3-step plan", Some(3.0)),
            ("pages 10-12", Some(12.0)),
            ("no digits here", None),
        ];
        for (text, expected) in cases {
            assert_eq!(last_number(text), expected, "last number of {text:?}");
        }
    }

    #[test]
    fn parse_number_cases() {
        let cases = [
            ("72", Some(72.0)),
            (" $1,000 ", Some(1000.0)),
            ("18.", Some(18.0)),
            ("25%", Some(25.0)),
            ("-0.5", Some(-0.5)),
            ("3 apples", None),
            ("1 2", None),
            ("", None),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_number(text), expected, "parse {text:?}");
        }
    }
}
