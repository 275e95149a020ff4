//! A table of unit facts for the yes/no and multiple-choice templates.

/// One unit fact: `name` equals `amount` of `unit`, and `comparative` is
/// the phrase used to compare it ("longer than").
pub(super) struct UnitFact {
    pub(super) name: &'static str,
    pub(super) comparative: &'static str,
    pub(super) unit: &'static str,
    pub(super) amount: u32,
}

const fn fact(
    name: &'static str,
    comparative: &'static str,
    unit: &'static str,
    amount: u32,
) -> UnitFact {
    UnitFact {
        name,
        comparative,
        unit,
        amount,
    }
}

/// Exact conversions only, so that every answer is beyond dispute. Years
/// and months are left out of day counts because their lengths vary.
pub(super) const UNIT_FACTS: &[UnitFact] = &[
    fact("a week", "longer than", "days", 7),
    fact("a day", "longer than", "hours", 24),
    fact("an hour", "longer than", "minutes", 60),
    fact("a minute", "longer than", "seconds", 60),
    fact("a year", "longer than", "months", 12),
    fact("a decade", "longer than", "years", 10),
    fact("a century", "longer than", "years", 100),
    fact("a meter", "longer than", "centimeters", 100),
    fact("a kilometer", "longer than", "meters", 1000),
    fact("a centimeter", "longer than", "millimeters", 10),
    fact("a foot", "longer than", "inches", 12),
    fact("a yard", "longer than", "feet", 3),
    fact("a kilogram", "heavier than", "grams", 1000),
    fact("a liter", "more than", "milliliters", 1000),
    fact("a dozen", "more than", "items", 12),
];
