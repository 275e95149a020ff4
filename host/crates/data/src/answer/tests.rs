//! Extraction and checking on responses written the way small instruction
//! models write them, including the awkward ones.

use super::*;

fn number(response: &str) -> Option<String> {
    extract(AnswerKind::Number, response)
}

fn yes_no(response: &str) -> Option<String> {
    extract(AnswerKind::YesNo, response)
}

fn choice(response: &str) -> Option<String> {
    extract(AnswerKind::Choice, response)
}

fn instance(kind: AnswerKind, reference: Option<&str>) -> Instance {
    Instance {
        id: "t".to_owned(),
        prompt: "q".to_owned(),
        reference: reference.map(str::to_owned),
        category: None,
        answer_kind: kind,
    }
}

#[test]
fn number_cases() {
    let cases: &[(&str, Option<&str>)] = &[
        ("Answer: 42", Some("42")),
        ("answer: -17", Some("-17")),
        ("Answer: $1,200.50", Some("1200.5")),
        ("Answer: 1,234,567 people", Some("1234567")),
        ("Answer: 3.75.", Some("3.75")),
        ("Answer: 0.5 liters", Some("0.5")),
        (
            "Answer: 18\nExplanation: 3 groups of 6 make 18, not 20.",
            Some("18"),
        ),
        (
            "Answer: 18. She had 12 and bought 6 more, 12 + 6 = 18 in all 2 days",
            Some("18"),
        ),
        ("So 5 + 7 = 12.\nAnswer:\n\n12", Some("12")),
        (
            "First 3 + 4 = 7, then 7 * 2 = 14. The answer is 14.",
            Some("14"),
        ),
        ("The answer is $-3.", Some("-3")),
        ("Answer: 3 + 4 = 7", Some("7")),
        ("Answer: 42 (6 * 7 = 42)", Some("42")),
        ("Answer: x = -5", Some("-5")),
        ("**Answer:** 36", Some("36")),
        ("**Answer**: 36", Some("36")),
        ("The total is $\\boxed{1,080}$.", Some("1080")),
        (
            "Answer: 12\nWait, I made a mistake.\nAnswer: 14",
            Some("14"),
        ),
        ("Answer: 14\nSo the answer is clear.", Some("14")),
        ("Answer: fourteen\nbecause 2 * 7 makes 14", Some("14")),
        (
            "She spends 48/2 = <<48/2=24>>24 dollars.\n#### 24",
            Some("24"),
        ),
        ("#### 72\nAnswer: 70", Some("72")),
        (
            "#### Step 1: add 3 and 4\nThat makes 7.\nAnswer: 7",
            Some("7"),
        ),
        ("#### Step 2\nThe total is 9", Some("9")),
        ("He walked 3 miles, then 4 more, so 7 miles", Some("7")),
        ("It dropped to -12 degrees.", Some("-12")),
        ("The price rose 10-15 percent", Some("15")),
        ("Answer: unknown", None),
        ("I cannot solve this.", None),
        ("", None),
    ];
    for (response, expected) in cases {
        assert_eq!(number(response).as_deref(), *expected, "{response:?}");
    }
}

#[test]
fn number_checked_numerically() {
    let cases: &[(&str, &str, bool)] = &[
        ("1200.5", "Answer: $1,200.50", true),
        ("1200", "Answer: 1200.0", true),
        ("-7", "Answer: -7", true),
        ("-7", "Answer: 7", false),
        ("0.3333333", "Answer: 0.33333331", true),
        ("0.3333", "Answer: 0.33", false),
        ("72", "Natalia sold 72 clips.", true),
        ("72", "no idea", false),
        ("1,080", "#### 1080", true),
    ];
    for (reference, response, expected) in cases {
        assert_eq!(
            check(AnswerKind::Number, reference, response),
            *expected,
            "{reference} / {response:?}"
        );
    }
}

#[test]
fn yes_no_cases() {
    let cases: &[(&str, Option<&str>)] = &[
        ("Answer: yes", Some("yes")),
        ("Answer: No.", Some("no")),
        ("ANSWER: YES", Some("yes")),
        ("Answer: True", Some("yes")),
        ("answer: false", Some("no")),
        ("There is no record of it. Answer: yes", Some("yes")),
        (
            "Answer: Yes, because there is no doubt and no evidence against it.",
            Some("yes"),
        ),
        ("Answer:\n\nno", Some("no")),
        ("Answer: it is not certain\nAnswer: no", Some("no")),
        ("Answer: I think not.", None),
        ("So the answer is no.", Some("no")),
        ("Yes. There is no doubt.", Some("yes")),
        (
            "No, because 17 has no divisors other than 1 and itself. So yes",
            Some("no"),
        ),
        (
            "17 has no divisors but 1 and 17, so it is prime: yes",
            Some("yes"),
        ),
        ("The eyes know nothing, notably.", None),
        ("", None),
    ];
    for (response, expected) in cases {
        assert_eq!(yes_no(response).as_deref(), *expected, "{response:?}");
    }
}

#[test]
fn yes_no_reference_forms() {
    assert!(check(AnswerKind::YesNo, "yes", "Answer: YES"));
    assert!(check(AnswerKind::YesNo, "True", "Answer: yes"));
    assert!(check(AnswerKind::YesNo, "no", "answer: False"));
    assert!(!check(AnswerKind::YesNo, "no", "Answer: yes"));
    assert!(!check(AnswerKind::YesNo, "maybe", "Answer: yes"));
}

#[test]
fn choice_cases() {
    let cases: &[(&str, Option<&str>)] = &[
        ("Answer: B", Some("B")),
        ("Answer: (C)", Some("C")),
        ("Answer: D) 30", Some("D")),
        ("answer: b)", Some("B")),
        ("Answer: **A**", Some("A")),
        ("The answer is B.", Some("B")),
        ("The answer is a) 12", Some("A")),
        ("The answer is a number, so option E.", Some("E")),
        ("Answer: I think B, since 45 is largest", Some("B")),
        ("The largest is 45, which is option B.", Some("B")),
        ("B) 45 is larger than A) 12, C) 7 and D) 30.", Some("B")),
        ("(C)", Some("C")),
        ("C", Some("C")),
        ("Looking at A) 12 and B) 45, the largest is (B)", Some("B")),
        ("A rectangle has four sides, so C) 4 is right.", Some("C")),
        ("A lot of people pick B) but (D) is right", Some("D")),
        ("A good guess is 45.", None),
        ("E.g. C) is right", Some("C")),
        ("A is the largest", Some("A")),
        ("A. It is the largest", Some("A")),
        ("A) 12", Some("A")),
        ("Answer: F", None),
        ("Because 45 is the largest number.", None),
        ("a dog ate it", None),
        ("", None),
    ];
    for (response, expected) in cases {
        assert_eq!(choice(response).as_deref(), *expected, "{response:?}");
    }
}

#[test]
fn choice_reference_forms() {
    assert!(check(AnswerKind::Choice, "b", "Answer: B"));
    assert!(check(AnswerKind::Choice, "(B)", "Answer: B"));
    assert!(!check(AnswerKind::Choice, "B", "Answer: C"));
    assert!(!check(AnswerKind::Choice, "F", "Answer: F"));
}

#[test]
fn choice_matched_by_option_text() {
    let mut question = instance(AnswerKind::Choice, Some("B"));
    question.prompt = "Which number is largest?\nA) 12\nB) 45\nC) 7\nD) 30".to_owned();
    assert!(is_correct(&question, "45 is the largest.\nAnswer: 45"));
    assert!(is_correct(&question, "Answer: **45.**"));
    assert!(!is_correct(&question, "Answer: 30"));
    assert!(!is_correct(&question, "Answer: 4"));
    assert!(!is_correct(&question, "Answer: C, which is 45"));
    assert!(!is_correct(&question, "The largest is 45."));
}

#[test]
fn free_text_normalized() {
    assert_eq!(
        extract(AnswerKind::Free, "It is in France.\nAnswer: **Paris.**").as_deref(),
        Some("**Paris.**")
    );
    assert!(check(
        AnswerKind::Free,
        "Paris",
        "It is in France.\nAnswer: **Paris.**"
    ));
    assert!(check(AnswerKind::Free, "New  York", "I'd say\n\nnew york"));
    assert!(check(AnswerKind::Free, "Paris", "$\\boxed{Paris}$"));
    assert!(!check(AnswerKind::Free, "Paris", "Answer: Lyon"));
    assert_eq!(extract(AnswerKind::Free, "  \n "), None);
}

#[test]
fn is_correct_uses_instance_reference() {
    let with_reference = instance(AnswerKind::Number, Some("19"));
    assert!(is_correct(&with_reference, "12 + 7 = 19\nAnswer: 19"));
    assert!(!is_correct(&with_reference, "Answer: 20"));
    let without_reference = instance(AnswerKind::Number, None);
    assert!(!is_correct(&without_reference, "Answer: 19"));
    let invalid_reference = instance(AnswerKind::Number, Some("nineteen"));
    assert!(!is_correct(&invalid_reference, "Answer: nineteen"));
}

#[test]
fn canonical_references() {
    assert_eq!(
        canonical_reference(AnswerKind::Number, "$1,200.50").as_deref(),
        Some("1200.5")
    );
    assert_eq!(
        canonical_reference(AnswerKind::YesNo, " No. ").as_deref(),
        Some("no")
    );
    assert_eq!(
        canonical_reference(AnswerKind::Choice, "d").as_deref(),
        Some("D")
    );
    assert_eq!(canonical_reference(AnswerKind::Free, "  "), None);
    assert_eq!(canonical_reference(AnswerKind::Choice, "AB"), None);
}

proptest::proptest! {
    #[test]
    fn extraction_never_panics(response in proptest::prelude::any::<String>()) {
        for kind in AnswerKind::ALL {
            let _ = extract(kind, &response);
            let _ = check(kind, "1", &response);
        }
    }

    #[test]
    fn extraction_never_panics_on_answer_like_text(
        response in "(Answer:|answer is|####|boxed\\{|\\(|\\)|[A-Ea-e]|-|\\$|,|\\.|[0-9]|é|−| |\n){0,40}",
    ) {
        for kind in AnswerKind::ALL {
            let _ = extract(kind, &response);
        }
    }

    #[test]
    fn stated_number_read_back(value in -1_000_000i64..1_000_000, cents in 0u32..100) {
        let text = format!("{value}.{cents:02}");
        let response = format!("Some work with 3 and 4.\nAnswer: {text}\nDone in 2 steps.");
        let extracted = number(&response).unwrap();
        proptest::prop_assert!(numbers_equal(&extracted, &text), "{} vs {}", extracted, text);
    }
}

#[test]
fn grade_without_reference_is_none() {
    let open = instance(AnswerKind::Number, None);
    assert_eq!(grade(&open, "Answer: 3"), None);
    assert!(!is_correct(&open, "Answer: 3"));

    let known = instance(AnswerKind::Number, Some("3"));
    assert_eq!(grade(&known, "Answer: 3"), Some(true));
    assert_eq!(grade(&known, "Answer: 4"), Some(false));
}
