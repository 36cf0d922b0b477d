//! Staff accounts: admins create them; supervisors and admins list them.

use axum::extract::State;
use axum::http::StatusCode;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::Result;
use super::json::ApiJson;
use super::{Admin, AppState, Management};
use crate::accounts::StaffInput;
use crate::store::{NewAudit, Staff, Store};

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_staff, create_staff))
}

/// All staff accounts.
#[utoipa::path(get, path = "/api/staff", tag = "staff",
    responses((status = 200, body = [Staff]), (status = 401), (status = 403)))]
async fn list_staff(State(store): State<Store>, _who: Management) -> Result<axum::Json<Vec<Staff>>> {
    Ok(axum::Json(store.list_staff().await?))
}

/// Creates a staff account. Doctors need specialty, qualification and registration number.
#[utoipa::path(post, path = "/api/staff", tag = "staff", request_body = StaffInput,
    responses((status = 201, body = Staff), (status = 401), (status = 403), (status = 409), (status = 422)))]
async fn create_staff(
    State(store): State<Store>,
    Admin(admin): Admin,
    ApiJson(input): ApiJson<StaffInput>,
) -> Result<(StatusCode, axum::Json<Staff>)> {
    let staff = input.create(&store).await?;
    store
        .append_audit(&NewAudit {
            staff_id: Some(admin.staff_id),
            action: "staff.create".into(),
            patient_id: None,
            contact_id: None,
            detail: format!("{} ({})", staff.username, staff.role),
        })
        .await?;
    Ok((StatusCode::CREATED, axum::Json(staff)))
}
