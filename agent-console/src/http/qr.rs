//! Reading an e-health card's QR code from a camera frame: the operator's
//! page sends a still from the camera; the server finds the code, decodes it
//! and picks the card number out of it. Nothing is looked up here: the page
//! then searches by card number, which is audited like any search.

use axum::body::Bytes;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiError, FieldError, Result};
use super::patients::normalise_card;
use super::{AppState, StaffOnDuty};

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(read_qr))
}

/// What a QR code said.
#[derive(Debug, Serialize, ToSchema)]
struct QrRead {
    /// The code's whole text.
    text: String,
    /// The e-health card number in it, if there is one.
    ehealth_card: Option<String>,
}

/// Reads the QR code in a camera still (PNG or JPEG body) and the e-health
/// card number it carries.
#[utoipa::path(post, path = "/api/qr", tag = "patients",
    request_body(content = Vec<u8>, content_type = "image/png"),
    responses((status = 200, body = QrRead), (status = 401), (status = 403), (status = 422)))]
async fn read_qr(StaffOnDuty(_staff): StaffOnDuty, body: Bytes) -> Result<axum::Json<QrRead>> {
    let invalid =
        |message: &str| ApiError::Invalid(vec![FieldError { field: "image".into(), message: message.into() }]);
    if body.is_empty() {
        return Err(invalid("send the camera still as the request body (PNG or JPEG)"));
    }
    // Decoding a still is CPU work: off the async executor.
    let text = tokio::task::spawn_blocking(move || decode(&body))
        .await
        .map_err(|e| ApiError::Internal(e.into()))?
        .map_err(|m| invalid(&m))?;
    let ehealth_card = card_in(&text);
    Ok(axum::Json(QrRead { text, ehealth_card }))
}

fn decode(bytes: &[u8]) -> std::result::Result<String, String> {
    let image = image::load_from_memory(bytes).map_err(|e| format!("not a PNG or JPEG image: {e}"))?.to_luma8();
    let (w, h) = (image.width() as usize, image.height() as usize);
    let mut prepared = rqrr::PreparedImage::prepare_from_greyscale(w, h, |x, y| image.get_pixel(x as u32, y as u32)[0]);
    let grids = prepared.detect_grids();
    let grid = grids.first().ok_or("no QR code found in the image; hold the card closer and steady")?;
    let (_, text) = grid.decode().map_err(|e| format!("the QR code could not be read ({e}); try again"))?;
    Ok(text)
}

/// The card number in a QR code's text: the whole text, or the first part
/// of it (a URL path segment, a `key=value`, a JSON field) that reads as a
/// card number with both letters and digits.
pub fn card_in(text: &str) -> Option<String> {
    let plausible = |s: &str| {
        normalise_card(s)
            .ok()
            .filter(|c| c.chars().any(|c| c.is_ascii_digit()) && c.chars().any(|c| c.is_ascii_alphabetic()))
    };
    plausible(text).or_else(|| {
        text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-')).filter(|t| !t.is_empty()).find_map(plausible)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_card_number_in_what_cards_carry() {
        assert_eq!(card_in("DL-EHC-100234").as_deref(), Some("DL-EHC-100234"));
        assert_eq!(card_in(" dl-ehc-100234\n").as_deref(), Some("DL-EHC-100234"));
        assert_eq!(card_in("https://ehealth.delhi.gov.in/card/DL-EHC-100234?v=2").as_deref(), Some("DL-EHC-100234"));
        assert_eq!(card_in(r#"{"card":"DL-EHC-100235","name":"Savitri Devi"}"#).as_deref(), Some("DL-EHC-100235"));
        assert_eq!(card_in("hello world"), None);
        assert_eq!(card_in("123456"), None);
    }

    #[test]
    fn decodes_a_generated_code_and_refuses_what_is_not_one() {
        let code = qrcode::QrCode::new(b"https://ehealth.delhi.gov.in/card/DL-EHC-100234").unwrap();
        let modules = code.width();
        let scale = 6;
        let size = (modules + 8) * scale;
        let mut img = image::GrayImage::from_pixel(size as u32, size as u32, image::Luma([255]));
        for y in 0..modules {
            for x in 0..modules {
                if code[(x, y)] == qrcode::Color::Dark {
                    for dy in 0..scale {
                        for dx in 0..scale {
                            img.put_pixel(
                                ((x + 4) * scale + dx) as u32,
                                ((y + 4) * scale + dy) as u32,
                                image::Luma([0]),
                            );
                        }
                    }
                }
            }
        }
        let mut png = Vec::new();
        img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png).unwrap();
        assert_eq!(decode(&png).unwrap(), "https://ehealth.delhi.gov.in/card/DL-EHC-100234");
        let blank = image::GrayImage::from_pixel(64, 64, image::Luma([255]));
        let mut png = Vec::new();
        blank.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png).unwrap();
        assert!(decode(&png).unwrap_err().contains("no QR code"));
        assert!(decode(b"not an image").unwrap_err().contains("not a PNG or JPEG"));
    }

    mod properties {
        use proptest::prelude::*;

        use super::*;

        /// A card number as printed, in any case: letters and digits both.
        fn card() -> impl Strategy<Value = String> {
            "[A-Za-z]{2}-[A-Za-z]{3}-[0-9]{6}|[A-Za-z]{1,4}[0-9]{5,10}"
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            /// Whatever a code says, a card number found in it is one the
            /// patient search accepts as it is (normalised, letters and digits).
            #[test]
            fn what_is_found_is_a_card_number(text in "\\PC{0,80}|[a-zA-Z0-9/:.?=&\"{}, -]{0,80}") {
                if let Some(c) = card_in(&text) {
                    prop_assert_eq!(normalise_card(&c), Ok(c.clone()));
                    prop_assert!(c.chars().any(|c| c.is_ascii_digit()) && c.chars().any(|c| c.is_ascii_alphabetic()));
                }
            }

            /// The card number comes out of the payloads cards carry: alone,
            /// a URL path segment, a query value or a JSON field.
            #[test]
            fn a_card_is_found_in_its_payloads(card in card(), name in "[A-Za-z ]{0,20}", form in 0u8..4) {
                let text = match form {
                    0 => format!(" {card}\n"),
                    1 => format!("https://ehealth.delhi.gov.in/card/{card}?v=2"),
                    2 => format!("ehealth://card?id={card}&name={}", name.replace(' ', "+")),
                    _ => serde_json::json!({"name": name, "card": card}).to_string(),
                };
                prop_assert_eq!(card_in(&text), Some(card.to_uppercase()), "{}", text);
            }
        }
    }
}
