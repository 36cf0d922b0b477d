//! The tele-consultation record: consent, and the e-prescription checked
//! against India's Telemedicine Practice Guidelines 2020 (TPG).
//!
//! Pure rules, no I/O: a [`PrescriptionDraft`] is checked against the
//! [`Formulary`] shipped with Careline and either becomes a [`Prescription`]
//! or is refused with every problem at once, each naming its field.
//!
//! The TPG drug lists: **O** (over the counter) in any consult; **A** on a
//! first consult by video, or as a refill of continuing medication on a
//! follow-up; **B** only on a follow-up, added to treatment under way;
//! **prohibited** (Schedule X and NDPS drugs) never.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// How the doctor and the patient talk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConsultMode {
    Video,
    Audio,
    Text,
}

/// Whether the patient has consulted for this condition before.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsultKind {
    First,
    FollowUp,
}

/// The TPG list a generic drug is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DrugList {
    O,
    A,
    B,
    /// Schedule X and NDPS drugs: never by telemedicine.
    Prohibited,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FormularyEntry {
    pub generic: String,
    pub list: DrugList,
    /// Why a drug is on its list (shown when it is refused).
    pub note: String,
}

/// The generic drugs a tele-consult may name, by TPG list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Formulary {
    entries: HashMap<String, FormularyEntry>,
}

impl Formulary {
    /// The formulary shipped with Careline (`telemed/data/formulary.csv`).
    pub fn builtin() -> Formulary {
        Formulary::from_csv(include_str!("../../data/formulary.csv")).expect("the shipped formulary parses")
    }

    /// Reads `generic,list,note` rows; `list` is `O`, `A`, `B` or `X` (prohibited).
    pub fn from_csv(text: &str) -> Result<Formulary, String> {
        let mut entries = HashMap::new();
        for (n, line) in text.lines().enumerate().skip(1) {
            if line.trim().is_empty() {
                continue;
            }
            // The generic name may itself hold commas inside parentheses; the list and note are the last two fields.
            let mut parts = line.rsplitn(3, ',');
            let note = parts.next().unwrap_or_default().trim().to_owned();
            let list = parts.next().ok_or_else(|| format!("line {}: expected generic,list,note", n + 1))?.trim();
            let generic = parts.next().ok_or_else(|| format!("line {}: expected generic,list,note", n + 1))?;
            let list = match list {
                "O" => DrugList::O,
                "A" => DrugList::A,
                "B" => DrugList::B,
                "X" => DrugList::Prohibited,
                other => return Err(format!("line {}: list `{other}` is not O, A, B or X", n + 1)),
            };
            let generic = normalise(generic);
            if generic.is_empty() {
                return Err(format!("line {}: the generic name is empty", n + 1));
            }
            entries.insert(generic.clone(), FormularyEntry { generic, list, note });
        }
        Ok(Formulary { entries })
    }

    pub fn get(&self, generic: &str) -> Option<&FormularyEntry> {
        self.entries.get(&normalise(generic))
    }

    /// Every entry, by generic name.
    pub fn entries(&self) -> Vec<FormularyEntry> {
        let mut all: Vec<FormularyEntry> = self.entries.values().cloned().collect();
        all.sort_by(|a, b| a.generic.cmp(&b.generic));
        all
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Generic names are written in capitals, single-spaced.
fn normalise(name: &str) -> String {
    name.split_whitespace().collect::<Vec<_>>().join(" ").to_uppercase()
}

/// Consent to the consult (TPG 2020 §3.3): implied when the patient starts
/// it; explicit when a health worker or caregiver starts it; for a minor, a
/// guardian's, with who they are. Recording needs its own explicit consent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Consent {
    /// The patient started the consult.
    Implied,
    /// Given explicitly by the patient (e.g. "I agree", recorded in the session).
    Explicit { by: String },
    /// A minor's consult: the guardian's consent and identity.
    Guardian { name: String, relation: String, id_document: Option<String> },
}

/// Who writes the prescription.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prescriber {
    pub name: String,
    pub qualification: String,
    /// The medical council registration number: required on every prescription.
    pub registration_number: String,
}

/// The patient as a prescription names them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RxPatient {
    pub name: String,
    pub age_years: Option<u32>,
    pub sex: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RxItem {
    /// The generic name (capitals on the prescription).
    pub generic: String,
    /// e.g. `500 mg`.
    pub strength: String,
    /// e.g. `1 tablet`.
    pub dose: String,
    /// e.g. `three times a day after food`.
    pub frequency: String,
    /// e.g. `5 days`.
    pub duration: String,
    /// A refill of medication the patient already takes for a chronic condition.
    #[serde(default)]
    pub continuing: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrescriptionDraft {
    pub prescriber: Prescriber,
    pub patient: RxPatient,
    pub mode: ConsultMode,
    pub kind: ConsultKind,
    pub diagnosis: String,
    pub items: Vec<RxItem>,
    pub advice: String,
}

/// A prescription that passed every rule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prescription {
    pub prescriber: Prescriber,
    pub patient: RxPatient,
    pub mode: ConsultMode,
    pub kind: ConsultKind,
    pub diagnosis: String,
    /// Generic names in capitals, each with its TPG list.
    pub items: Vec<(RxItem, DrugList)>,
    pub advice: String,
}

/// One reason a draft was refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RxProblem {
    /// e.g. `prescriber.registration_number` or `items[1].generic`.
    pub field: String,
    pub message: String,
}

fn problem(field: impl Into<String>, message: impl Into<String>) -> RxProblem {
    RxProblem { field: field.into(), message: message.into() }
}

impl PrescriptionDraft {
    /// Checks every TPG rule and returns the prescription, or every problem found.
    pub fn issue(self, formulary: &Formulary) -> Result<Prescription, Vec<RxProblem>> {
        let mut problems = Vec::new();
        let blank = |s: &str| s.trim().is_empty();
        for (field, value) in [
            ("prescriber.name", &self.prescriber.name),
            ("prescriber.qualification", &self.prescriber.qualification),
            ("prescriber.registration_number", &self.prescriber.registration_number),
            ("patient.name", &self.patient.name),
            ("patient.sex", &self.patient.sex),
        ] {
            if blank(value) {
                problems.push(problem(field, "is required on a prescription (TPG 2020)"));
            }
        }
        if self.patient.age_years.is_none() {
            problems.push(problem("patient.age_years", "is required on a prescription (TPG 2020)"));
        }
        if blank(&self.diagnosis) {
            problems.push(problem("diagnosis", "give the provisional diagnosis"));
        }
        if self.items.is_empty() {
            problems.push(problem("items", "a prescription names at least one medicine"));
        }
        let mut items = Vec::with_capacity(self.items.len());
        for (i, item) in self.items.into_iter().enumerate() {
            let at = |f: &str| format!("items[{i}].{f}");
            for (f, v) in [("dose", &item.dose), ("frequency", &item.frequency), ("duration", &item.duration)] {
                if blank(v) {
                    problems.push(problem(at(f), "is required"));
                }
            }
            let Some(entry) = formulary.get(&item.generic) else {
                problems.push(problem(
                    at("generic"),
                    format!(
                        "`{}` is not in the formulary: write the generic name of a listed drug",
                        item.generic.trim()
                    ),
                ));
                continue;
            };
            let allowed = match entry.list {
                DrugList::O => Ok(()),
                DrugList::A => match (self.mode, self.kind, item.continuing) {
                    (ConsultMode::Video, ConsultKind::First, _) => Ok(()),
                    (_, ConsultKind::FollowUp, true) => Ok(()),
                    (_, ConsultKind::FollowUp, false) => {
                        Err("is on List A: on a follow-up only as a refill of continuing medication".to_owned())
                    }
                    (_, ConsultKind::First, _) => {
                        Err("is on List A: a first consult may prescribe it only by video".to_owned())
                    }
                },
                DrugList::B => match self.kind {
                    ConsultKind::FollowUp => Ok(()),
                    ConsultKind::First => Err(format!("is on List B: only on a follow-up ({})", entry.note)),
                },
                DrugList::Prohibited => Err(format!("may not be prescribed by telemedicine: {}", entry.note)),
            };
            match allowed {
                Ok(()) => items.push((RxItem { generic: entry.generic.clone(), ..item }, entry.list)),
                Err(why) => problems.push(problem(at("generic"), format!("{} {why}", entry.generic))),
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(Prescription {
            prescriber: self.prescriber,
            patient: self.patient,
            mode: self.mode,
            kind: self.kind,
            diagnosis: self.diagnosis.trim().to_owned(),
            items,
            advice: self.advice.trim().to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(generic: &str) -> RxItem {
        RxItem {
            generic: generic.into(),
            strength: "500 mg".into(),
            dose: "1 tablet".into(),
            frequency: "twice a day".into(),
            duration: "5 days".into(),
            continuing: false,
        }
    }

    fn draft(mode: ConsultMode, kind: ConsultKind, items: Vec<RxItem>) -> PrescriptionDraft {
        PrescriptionDraft {
            prescriber: Prescriber {
                name: "Dr. Anil Mehta".into(),
                qualification: "MBBS, MD (Medicine)".into(),
                registration_number: "DMC/R/10237".into(),
            },
            patient: RxPatient { name: "Aarav Kumar".into(), age_years: Some(10), sex: "male".into() },
            mode,
            kind,
            diagnosis: "Acute febrile illness".into(),
            items,
            advice: "Fluids, rest".into(),
        }
    }

    #[test]
    fn the_shipped_formulary_has_every_list() {
        let f = Formulary::builtin();
        assert!(f.len() >= 50);
        for (drug, list) in [
            ("paracetamol", DrugList::O),
            ("Amoxicillin", DrugList::A),
            ("GLIMEPIRIDE", DrugList::B),
            ("alprazolam", DrugList::Prohibited),
        ] {
            assert_eq!(f.get(drug).map(|e| e.list), Some(list), "{drug}");
        }
        assert!(f.get("ANTACID (ALUMINIUM HYDROXIDE + MAGNESIUM HYDROXIDE)").is_some(), "commas inside a name");
    }

    #[test]
    fn list_o_any_mode_and_generic_names_in_capitals() {
        let rx = draft(ConsultMode::Text, ConsultKind::First, vec![item("  paracetamol ")])
            .issue(&Formulary::builtin())
            .unwrap();
        assert_eq!(rx.items[0].0.generic, "PARACETAMOL");
        assert_eq!(rx.items[0].1, DrugList::O);
    }

    #[test]
    fn list_a_needs_video_on_a_first_consult_or_a_refill_on_follow_up() {
        let f = Formulary::builtin();
        let err = draft(ConsultMode::Audio, ConsultKind::First, vec![item("amoxicillin")]).issue(&f).unwrap_err();
        assert_eq!(err.len(), 1);
        assert_eq!(err[0].field, "items[0].generic");
        assert!(err[0].message.contains("only by video"), "{err:?}");
        assert!(draft(ConsultMode::Video, ConsultKind::First, vec![item("amoxicillin")]).issue(&f).is_ok());
        let refill = RxItem { continuing: true, ..item("metformin") };
        assert!(draft(ConsultMode::Audio, ConsultKind::FollowUp, vec![refill]).issue(&f).is_ok());
        assert!(draft(ConsultMode::Audio, ConsultKind::FollowUp, vec![item("metformin")]).issue(&f).is_err());
    }

    #[test]
    fn list_b_only_on_follow_up_and_prohibited_never() {
        let f = Formulary::builtin();
        assert!(draft(ConsultMode::Video, ConsultKind::First, vec![item("glimepiride")]).issue(&f).is_err());
        assert!(draft(ConsultMode::Audio, ConsultKind::FollowUp, vec![item("glimepiride")]).issue(&f).is_ok());
        for mode in [ConsultMode::Video, ConsultMode::Audio, ConsultMode::Text] {
            for kind in [ConsultKind::First, ConsultKind::FollowUp] {
                let err = draft(mode, kind, vec![item("Alprazolam")]).issue(&f).unwrap_err();
                assert!(err[0].message.contains("NDPS"), "{err:?}");
            }
        }
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let mut d = draft(
            ConsultMode::Audio,
            ConsultKind::First,
            vec![item("paracetamol"), item("unobtainium"), item("tramadol")],
        );
        d.prescriber.registration_number = " ".into();
        d.patient.age_years = None;
        d.items[0].duration = String::new();
        let err = d.issue(&Formulary::builtin()).unwrap_err();
        let fields: Vec<&str> = err.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(
            fields,
            vec![
                "prescriber.registration_number",
                "patient.age_years",
                "items[0].duration",
                "items[1].generic",
                "items[2].generic"
            ]
        );
        assert!(err[3].message.contains("not in the formulary"));
    }

    #[test]
    fn a_bad_formulary_names_its_line() {
        assert_eq!(
            Formulary::from_csv("generic,list,note\nFOO,Z,\n").unwrap_err(),
            "line 2: list `Z` is not O, A, B or X"
        );
    }
}
