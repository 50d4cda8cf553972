//! The language a card speaks: `cards.locale` (`en`, the default, or `zh-CN`), or the one a
//! mapping file pins with `locale:`. The payload's own text is never translated; what a mapping
//! writes (titles, labels, status words) and what filters produce (durations) follows it.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer};

/// A card language.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Locale {
    /// English.
    #[default]
    En,
    /// Simplified Chinese.
    ZhCn,
}

impl Locale {
    /// Every language a mapping may write.
    pub const ALL: &'static [Locale] = &[Locale::En, Locale::ZhCn];

    /// The tag as written in settings and mapping files.
    pub fn as_str(self) -> &'static str {
        match self {
            Locale::En => "en",
            Locale::ZhCn => "zh-CN",
        }
    }
}

impl fmt::Display for Locale {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Locale {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "en" => Ok(Locale::En),
            "zh-CN" | "zh-cn" | "zh_CN" => Ok(Locale::ZhCn),
            other => Err(format!("unknown locale {other:?} (en or zh-CN)")),
        }
    }
}

impl<'de> Deserialize<'de> for Locale {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_locale_reads_back_from_its_tag_and_an_unknown_one_says_which_are_known() {
        for l in Locale::ALL {
            assert_eq!(l.as_str().parse::<Locale>(), Ok(*l));
        }
        assert!("fr".parse::<Locale>().unwrap_err().contains("en or zh-CN"));
        assert_eq!(Locale::default(), Locale::En);
    }
}
