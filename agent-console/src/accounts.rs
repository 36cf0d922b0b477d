//! Creating staff accounts, shared by the CLI (`careline user add`) and the API.

use serde::Deserialize;
use utoipa::ToSchema;

use crate::auth::hash_password;
use crate::http::error::{ApiError, FieldError};
use crate::store::{NewStaff, Role, Staff, Store};

/// A staff account to create, as the API and the CLI receive it.
#[derive(Clone, Debug, Deserialize, ToSchema)]
pub struct StaffInput {
    /// 3 to 32 characters: lowercase letters, digits, `.`, `_` and `-`.
    pub username: String,
    /// At least 10 characters.
    pub password: String,
    pub role: Role,
    pub display_name: String,
    /// ISO 639-1 codes of the languages spoken, e.g. `["hi", "en"]`.
    #[serde(default = "default_languages")]
    pub languages: Vec<String>,
    /// Doctors: `general` for a general physician, or the specialty.
    pub specialty: Option<String>,
    /// Doctors: e.g. `MBBS, MD (Medicine)`.
    pub qualification: Option<String>,
    /// Doctors: the medical council registration number (TPG 2020 requires it on prescriptions).
    pub registration_number: Option<String>,
}

pub fn default_languages() -> Vec<String> {
    vec!["hi".into(), "en".into()]
}

impl StaffInput {
    /// Every problem with the input, each naming its field.
    pub fn problems(&self) -> Vec<FieldError> {
        let mut out = Vec::new();
        let mut bad =
            |field: &str, message: &str| out.push(FieldError { field: field.into(), message: message.into() });
        let u = &self.username;
        if !(3..=32).contains(&u.len())
            || !u.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'))
        {
            bad("username", "3 to 32 characters: lowercase letters, digits, `.`, `_` or `-`");
        }
        if self.password.chars().count() < 10 {
            bad("password", "must be at least 10 characters");
        }
        if self.display_name.trim().is_empty() {
            bad("display_name", "must not be empty");
        }
        for (field, value) in [
            ("display_name", Some(&self.display_name)),
            ("specialty", self.specialty.as_ref()),
            ("qualification", self.qualification.as_ref()),
            ("registration_number", self.registration_number.as_ref()),
        ] {
            if let Some(e) = value.and_then(|v| crate::http::json::control_characters(field, v)) {
                bad(field, &e.message);
            }
        }
        if self.languages.is_empty() {
            bad("languages", "name at least one language");
        } else if !self
            .languages
            .iter()
            .all(|l| (2..=3).contains(&l.len()) && l.chars().all(|c| c.is_ascii_lowercase()))
        {
            bad("languages", "use ISO 639 codes such as `hi`, `en`, `pa`, `ur`");
        }
        let doctor_fields = [
            ("specialty", &self.specialty),
            ("qualification", &self.qualification),
            ("registration_number", &self.registration_number),
        ];
        for (field, value) in doctor_fields {
            let present = value.as_deref().is_some_and(|v| !v.trim().is_empty());
            match (self.role, present) {
                (Role::Doctor, false) => bad(field, "is required for a doctor"),
                (Role::Doctor, true) | (_, false) => {}
                (_, true) => bad(field, "only doctors have this"),
            }
        }
        out
    }

    /// Validates, hashes the password (off the executor) and stores the account.
    pub async fn create(self, store: &Store) -> Result<Staff, ApiError> {
        let problems = self.problems();
        if !problems.is_empty() {
            return Err(ApiError::Invalid(problems));
        }
        let password = self.password;
        let password_hash = tokio::task::spawn_blocking(move || hash_password(&password))
            .await
            .map_err(|e| ApiError::Internal(e.into()))??;
        let trimmed = |v: Option<String>| v.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        let new = NewStaff {
            username: self.username,
            password_hash,
            role: self.role,
            display_name: self.display_name.trim().to_owned(),
            languages: self.languages,
            specialty: trimmed(self.specialty),
            qualification: trimmed(self.qualification),
            registration_number: trimmed(self.registration_number),
        };
        Ok(store.create_staff(&new).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(role: Role) -> StaffInput {
        StaffInput {
            username: "asha.k".into(),
            password: "long enough pw".into(),
            role,
            display_name: "Asha Kumari".into(),
            languages: default_languages(),
            specialty: None,
            qualification: None,
            registration_number: None,
        }
    }

    #[test]
    fn rules() {
        let fields = |i: StaffInput| i.problems().into_iter().map(|p| p.field).collect::<Vec<_>>();
        assert!(fields(input(Role::Operator)).is_empty());
        assert_eq!(fields(input(Role::Doctor)), ["specialty", "qualification", "registration_number"]);
        let mut op = input(Role::Operator);
        op.registration_number = Some("DMC/1234".into());
        assert_eq!(fields(op), ["registration_number"]);
        let mut bad = input(Role::Supervisor);
        bad.username = "Asha K".into();
        bad.password = "short".into();
        bad.languages = vec!["Hindi".into()];
        assert_eq!(fields(bad), ["username", "password", "languages"]);
    }
}
