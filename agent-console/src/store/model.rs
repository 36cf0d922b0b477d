//! The records the store keeps, and their typed IDs.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, sqlx::Type, ToSchema)]
        #[serde(transparent)]
        #[sqlx(transparent)]
        pub struct $name(pub i64);

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

id_type!(
    /// A staff account: operator, doctor, supervisor or admin.
    StaffId
);
id_type!(
    /// A patient as the helpline knows them (not the HIMS id, which is text).
    PatientId
);
id_type!(
    /// One of the 45 seats.
    SeatId
);
id_type!(
    /// An operator shift or a slot of the doctors' rota.
    ShiftId
);
id_type!(
    /// An entry of the append-only audit log.
    AuditId
);

/// What a staff member may do. Each role has its own console.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Operator,
    Doctor,
    Supervisor,
    Admin,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Operator, Role::Doctor, Role::Supervisor, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Operator => "operator",
            Role::Doctor => "doctor",
            Role::Supervisor => "supervisor",
            Role::Admin => "admin",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| format!("unknown role `{s}`: expected operator, doctor, supervisor or admin"))
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A staff account as the API shows it (never with its password hash).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Staff {
    pub staff_id: StaffId,
    pub username: String,
    pub role: Role,
    pub display_name: String,
    /// ISO 639-1 codes, e.g. `["hi", "en", "pa"]`: routing offers a contact only to staff who speak its language.
    pub languages: Vec<String>,
    /// Doctors only, e.g. `general`, `paediatrics`.
    pub specialty: Option<String>,
    /// Doctors only, printed on prescriptions (TPG 2020 3.7.1), e.g. `MBBS, MD`.
    pub qualification: Option<String>,
    /// Doctors only: the medical council registration number, mandatory on prescriptions (TPG 2020).
    pub registration_number: Option<String>,
    pub active: bool,
    pub created_at: DateTime<Utc>,
}

/// A staff account to create. Validated by [`NewStaff::validate`] before it is stored.
#[derive(Clone, Debug)]
pub struct NewStaff {
    pub username: String,
    pub password_hash: String,
    pub role: Role,
    pub display_name: String,
    pub languages: Vec<String>,
    pub specialty: Option<String>,
    pub qualification: Option<String>,
    pub registration_number: Option<String>,
}

/// One seat of the floor. Seats 41 to 45 are peak seats, open only during the peak shift.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Seat {
    pub seat_id: SeatId,
    pub label: String,
    pub is_peak: bool,
}

/// A shift, in local (Asia/Kolkata) minutes after midnight.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Shift {
    pub shift_id: ShiftId,
    pub name: String,
    pub role: Role,
    pub starts_minute: i64,
    /// May be at or before `starts_minute`: the shift then ends the next day (the doctors' night).
    pub ends_minute: i64,
    pub is_peak: bool,
}

/// Who works which shift on which local day.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RosterEntry {
    pub shift_id: ShiftId,
    pub staff_id: StaffId,
    pub day: NaiveDate,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Sex {
    Female,
    Male,
    Other,
    Unknown,
}

impl Sex {
    pub fn as_str(self) -> &'static str {
        match self {
            Sex::Female => "female",
            Sex::Male => "male",
            Sex::Other => "other",
            Sex::Unknown => "unknown",
        }
    }

    /// A stored sex; anything else is an error naming it.
    pub(crate) fn parse(s: &str) -> Result<Sex, String> {
        match s {
            "female" => Ok(Sex::Female),
            "male" => Ok(Sex::Male),
            "other" => Ok(Sex::Other),
            "unknown" => Ok(Sex::Unknown),
            _ => Err(format!("unknown sex `{s}`: expected one of female, male, other, unknown")),
        }
    }
}

/// An ABHA number (Ayushman Bharat Health Account, ABDM): 14 digits, written
/// `91-XXXX-XXXX-XXXX`. Stored and shown in that hyphenated form.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(try_from = "String", into = "String")]
#[schema(value_type = String, example = "91-1234-5678-9012")]
pub struct AbhaNumber(String);

impl AbhaNumber {
    /// The FHIR identifier system for ABHA numbers.
    pub const SYSTEM: &'static str = "https://healthid.ndhm.gov.in";

    pub fn parse(input: &str) -> Result<Self, String> {
        let digits: String = input.chars().filter(|c| !matches!(c, '-' | ' ')).collect();
        if digits.len() != 14 || !digits.chars().all(|c| c.is_ascii_digit()) {
            return Err(format!("`{input}` is not an ABHA number: it has 14 digits, written 91-XXXX-XXXX-XXXX"));
        }
        if !digits.starts_with("91") {
            return Err(format!("`{input}` is not an ABHA number: ABHA numbers start with 91"));
        }
        Ok(AbhaNumber(format!("{}-{}-{}-{}", &digits[0..2], &digits[2..6], &digits[6..10], &digits[10..14])))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for AbhaNumber {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        AbhaNumber::parse(&s)
    }
}

impl From<AbhaNumber> for String {
    fn from(a: AbhaNumber) -> String {
        a.0
    }
}

/// A patient as the helpline knows them; the hospital record is in HIMS (`hims_patient_id`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Patient {
    pub patient_id: PatientId,
    pub name: String,
    pub birth_date: Option<NaiveDate>,
    /// Known age when the birth date is not; derived from `birth_date` when it is.
    pub age_years: Option<i64>,
    pub sex: Sex,
    pub phone: Option<String>,
    pub email: Option<String>,
    pub preferred_language: String,
    /// The Delhi e-health card number (printed under the card's QR code).
    pub ehealth_card: Option<String>,
    pub abha_number: Option<AbhaNumber>,
    pub hims_patient_id: Option<String>,
    pub family: Vec<FamilyMember>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FamilyMember {
    pub patient_id: PatientId,
    pub name: String,
    /// How the relative stands to the patient, e.g. `mother`, `son`.
    pub relation: String,
}

/// A patient to register; fields already validated at the edge.
#[derive(Clone, Debug, Default)]
pub struct NewPatient {
    pub name: String,
    pub birth_date: Option<NaiveDate>,
    pub age_years: Option<i64>,
    pub sex: Option<Sex>,
    pub phone: Option<String>,
    pub email: Option<String>,
    pub preferred_language: Option<String>,
    pub ehealth_card: Option<String>,
    pub abha_number: Option<AbhaNumber>,
    pub hims_patient_id: Option<String>,
}

/// How a patient is looked up by an operator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PatientKey {
    EhealthCard(String),
    Abha(AbhaNumber),
    Phone(String),
    HimsId(String),
}

/// One line of the audit log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AuditEntry {
    pub audit_id: AuditId,
    pub created_at: DateTime<Utc>,
    pub staff_id: Option<StaffId>,
    pub action: String,
    pub patient_id: Option<PatientId>,
    /// The contact (call or chat) in whose context the record was read.
    pub contact_id: Option<String>,
    pub detail: String,
}

/// An audit entry to append.
#[derive(Clone, Debug, PartialEq)]
pub struct NewAudit {
    pub staff_id: Option<StaffId>,
    pub action: String,
    pub patient_id: Option<PatientId>,
    pub contact_id: Option<String>,
    pub detail: String,
}
