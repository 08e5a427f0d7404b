//! Knobs: the user-facing controls of a device and of the model that imitates it.
//!
//! A [`KnobSpec`] is declared once, in the dataset manifest, and travels unchanged into the
//! model file, the plugin parameters and the app's sliders. Models never see physical values:
//! they see [`KnobSpec::normalize`]d values in `0..=1`, so a knob's unit and taper only matter
//! at the edges.

use serde::{Deserialize, Serialize};

/// How a knob's physical value maps onto its travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Taper {
    /// Equal steps of travel are equal steps of value.
    #[default]
    Linear,
    /// Equal steps of travel are equal ratios of value (`min` must be above zero), as for
    /// times in ms or frequencies in Hz.
    Log,
}

/// One knob of a device: name, unit, range, default and taper.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KnobSpec {
    /// Stable identifier, also used in file names (`wet__gain=20.wav`) and on the command line
    /// (`--knob gain=20`). Letters, digits, `_` and `-` only.
    pub name: String,
    /// Physical unit shown to the user (`dB`, `ms`, `%`, or empty for a bare dial position).
    #[serde(default)]
    pub unit: String,
    /// Lowest value, in `unit`.
    pub min: f64,
    /// Highest value, in `unit`.
    pub max: f64,
    /// Value the knob takes when nothing else says otherwise, in `unit`.
    pub default: f64,
    /// Mapping of value onto travel.
    #[serde(default)]
    pub taper: Taper,
}

/// A knob declaration or value that cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum KnobError {
    #[error("knob name {name:?} must be non-empty and use only letters, digits, '_' and '-'")]
    BadName { name: String },
    #[error("knob {name:?}: range {min}..{max} is empty or not finite")]
    BadRange { name: String, min: f64, max: f64 },
    #[error("knob {name:?}: a log taper needs a minimum above zero, got {min}")]
    LogTaperNeedsPositiveMin { name: String, min: f64 },
    #[error("knob {name:?}: default {default} is outside {min}..{max}")]
    DefaultOutOfRange {
        name: String,
        default: f64,
        min: f64,
        max: f64,
    },
    #[error("knob {name:?}: value {value} is outside its range {min}..{max}")]
    OutOfRange {
        name: String,
        value: f64,
        min: f64,
        max: f64,
    },
    #[error("unknown knob {name:?} (this device has: {known})")]
    Unknown { name: String, known: String },
    #[error("knob {name:?} has no value and no default")]
    Missing { name: String },
    #[error("cannot parse knob setting {text:?}: expected NAME=VALUE, e.g. gain=20")]
    BadSetting { text: String },
}

impl KnobSpec {
    /// Checks the declaration itself: name, range, taper and default.
    pub fn validate(&self) -> Result<(), KnobError> {
        let name_ok = !self.name.is_empty()
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !name_ok {
            return Err(KnobError::BadName {
                name: self.name.clone(),
            });
        }
        if !(self.min.is_finite() && self.max.is_finite() && self.max > self.min) {
            return Err(KnobError::BadRange {
                name: self.name.clone(),
                min: self.min,
                max: self.max,
            });
        }
        if self.taper == Taper::Log && self.min <= 0.0 {
            return Err(KnobError::LogTaperNeedsPositiveMin {
                name: self.name.clone(),
                min: self.min,
            });
        }
        if !(self.min..=self.max).contains(&self.default) {
            return Err(KnobError::DefaultOutOfRange {
                name: self.name.clone(),
                default: self.default,
                min: self.min,
                max: self.max,
            });
        }
        Ok(())
    }

    /// Checks that `value` lies in the knob's range.
    pub fn check(&self, value: f64) -> Result<f64, KnobError> {
        if value.is_finite() && (self.min..=self.max).contains(&value) {
            Ok(value)
        } else {
            Err(KnobError::OutOfRange {
                name: self.name.clone(),
                value,
                min: self.min,
                max: self.max,
            })
        }
    }

    /// Maps a physical value onto `0..=1` of travel, following the taper. Values outside the
    /// range are clamped.
    pub fn normalize(&self, value: f64) -> f64 {
        let value = value.clamp(self.min, self.max);
        let t = match self.taper {
            Taper::Linear => (value - self.min) / (self.max - self.min),
            Taper::Log => (value / self.min).ln() / (self.max / self.min).ln(),
        };
        t.clamp(0.0, 1.0)
    }

    /// Inverse of [`KnobSpec::normalize`]: travel in `0..=1` to a physical value.
    pub fn denormalize(&self, travel: f64) -> f64 {
        let t = travel.clamp(0.0, 1.0);
        match self.taper {
            Taper::Linear => self.min + t * (self.max - self.min),
            Taper::Log => self.min * (self.max / self.min).powf(t),
        }
    }
}

/// Parses `NAME=VALUE` as given on the command line.
pub fn parse_setting(text: &str) -> Result<(String, f64), KnobError> {
    let bad = || KnobError::BadSetting {
        text: text.to_string(),
    };
    let (name, value) = text.split_once('=').ok_or_else(bad)?;
    let value: f64 = value.trim().parse().map_err(|_| bad())?;
    Ok((name.trim().to_string(), value))
}

/// Resolves named settings against a device's knobs, in the order of `knobs`: every setting
/// must name a known knob and lie in range; a knob without a setting takes its default.
/// Returns physical values.
pub fn resolve_settings(
    knobs: &[KnobSpec],
    settings: &[(String, f64)],
) -> Result<Vec<f64>, KnobError> {
    for (name, _) in settings {
        if !knobs.iter().any(|k| &k.name == name) {
            return Err(KnobError::Unknown {
                name: name.clone(),
                known: knobs
                    .iter()
                    .map(|k| k.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
    }
    knobs
        .iter()
        .map(
            |k| match settings.iter().rev().find(|(n, _)| n == &k.name) {
                Some((_, v)) => k.check(*v),
                None => Ok(k.default),
            },
        )
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn knob(taper: Taper, min: f64, max: f64) -> KnobSpec {
        KnobSpec {
            name: "gain".into(),
            unit: "dB".into(),
            min,
            max,
            default: min,
            taper,
        }
    }

    #[test]
    fn log_taper_puts_geometric_mean_at_half_travel() {
        let k = knob(Taper::Log, 10.0, 1000.0);
        assert!((k.normalize(100.0) - 0.5).abs() < 1e-12);
        assert!((k.denormalize(0.5) - 100.0).abs() < 1e-9);
    }

    #[test]
    fn normalize_round_trips_for_both_tapers() {
        for taper in [Taper::Linear, Taper::Log] {
            let k = knob(taper, 2.0, 50.0);
            for i in 0..=20 {
                let t = i as f64 / 20.0;
                assert!((k.normalize(k.denormalize(t)) - t).abs() < 1e-12);
            }
        }
    }

    #[test]
    fn out_of_range_setting_names_knob_and_range() {
        let k = knob(Taper::Linear, 0.0, 100.0);
        let err = resolve_settings(&[k], &[("gain".into(), 120.0)]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "knob \"gain\": value 120 is outside its range 0..100"
        );
    }

    #[test]
    fn unknown_knob_lists_known_ones_and_defaults_fill_gaps() {
        let k = knob(Taper::Linear, 0.0, 100.0);
        let err = resolve_settings(std::slice::from_ref(&k), &[("colour".into(), 1.0)]);
        assert!(err.unwrap_err().to_string().contains("has: gain"));
        assert_eq!(resolve_settings(&[k], &[]).unwrap(), vec![0.0]);
    }

    #[test]
    fn log_taper_with_zero_min_is_rejected() {
        assert!(matches!(
            knob(Taper::Log, 0.0, 10.0).validate(),
            Err(KnobError::LogTaperNeedsPositiveMin { .. })
        ));
    }
}
