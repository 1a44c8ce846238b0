//! Comparing people's names for separation of duties.
//!
//! A change system names people as people type them: `Ada Quist`, `ada quist`, `Ａｄａ Ｑｕｉｓｔ`
//! (full-width forms), `Ada\u{a0}Quist` (a no-break space), `Ada  Quist`, `José` with a composed
//! or a decomposed `é`, `ÉMILE` and `Émile`. All of these name one person, so the requestor of a
//! change must not be able to approve it by writing their name another way. Names are compared
//! by their *identity key*: Unicode NFKC (compatibility forms such as full-width letters and
//! no-break spaces become their plain forms), full case folding (`ß` and `ss`, `É` and `é`),
//! NFKC again (folding can leave non-normalised sequences), then every run of Unicode white
//! space collapsed to one ASCII space, trimmed. This is Unicode's "compatibility caseless
//! matching" (Unicode 15, section 3.13, D146) plus white-space collapsing.

use unicode_normalization::UnicodeNormalization as _;

/// The identity key of a name (see the module documentation).
pub fn identity_key(name: &str) -> String {
    let nfkc: String = name.nfkc().collect();
    let folded = caseless::default_case_fold_str(&nfkc);
    let normal: String = folded.nfkc().collect();
    normal.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Whether two names name the same person.
pub fn same_person(a: &str, b: &str) -> bool {
    identity_key(a) == identity_key(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_of_one_person_are_one_person() {
        for (a, b) in [
            ("Ada Quist", "ada quist"),
            ("Ada Quist", "Ａｄａ Ｑｕｉｓｔ"),
            ("Ada Quist", "Ada\u{a0}Quist"),
            ("Ada Quist", "Ada  Quist"),
            ("Ada Quist", " Ada\tQuist\u{2003}"),
            ("José", "Jose\u{301}"),
            ("ÉMILE", "Émile"),
            ("Straße", "STRASSE"),
            ("ﬁlip", "FILIP"),
        ] {
            assert!(same_person(a, b), "{a:?} vs {b:?}");
        }
    }

    #[test]
    fn different_people_stay_different() {
        for (a, b) in [
            ("Ada Quist", "Ada Quest"),
            ("José", "Jose"),
            ("Lee Brandt", "Dana Okafor"),
            ("AdaQuist", "Ada Quist"),
        ] {
            assert!(!same_person(a, b), "{a:?} vs {b:?}");
        }
    }
}
