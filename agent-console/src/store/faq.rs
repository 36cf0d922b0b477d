//! The information desk's approved answers to common questions, in English
//! and Hindi, and their search (either language, `lower(..) like`).

use chrono::Utc;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{Result, Store, StoreError, like_pattern, on_pool};

/// An approved answer to a common question.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Faq {
    pub faq_id: i64,
    pub topic: String,
    pub question_en: String,
    pub answer_en: String,
    pub question_hi: String,
    pub answer_hi: String,
}

impl Store {
    /// Adds an approved answer, or updates the one with the same topic and English question.
    pub async fn upsert_faq(&self, f: &Faq) -> Result<i64> {
        let (id,): (i64,) = on_pool!(self, pool => sqlx::query_as(
            "insert into faq (topic, question_en, answer_en, question_hi, answer_hi, updated_at) \
             values ($1, $2, $3, $4, $5, $6) on conflict (topic, question_en) do update set \
             answer_en = excluded.answer_en, question_hi = excluded.question_hi, answer_hi = excluded.answer_hi, \
             updated_at = excluded.updated_at returning faq_id",
        )
        .bind(&f.topic)
        .bind(&f.question_en)
        .bind(&f.answer_en)
        .bind(&f.question_hi)
        .bind(&f.answer_hi)
        .bind(Utc::now())
        .fetch_one(pool)
        .await)
        .map_err(StoreError::from_sqlx)?;
        Ok(id)
    }

    /// Approved answers whose question, answer or topic contains `text`, in either language.
    pub async fn search_faq(&self, text: &str) -> Result<Vec<Faq>> {
        let pattern = like_pattern(text);
        let rows: Vec<(i64, String, String, String, String, String)> = on_pool!(self, pool => sqlx::query_as(
            "select faq_id, topic, question_en, answer_en, question_hi, answer_hi from faq where $1 is null \
             or lower(topic) like $1 escape '\\' or lower(question_en) like $1 escape '\\' \
             or lower(answer_en) like $1 escape '\\' or question_hi like $1 escape '\\' or answer_hi like $1 escape '\\' \
             order by topic, faq_id limit 50",
        )
        .bind(pattern)
        .fetch_all(pool)
        .await)
        .map_err(StoreError::from_sqlx)?;
        Ok(rows
            .into_iter()
            .map(|(faq_id, topic, question_en, answer_en, question_hi, answer_hi)| Faq {
                faq_id,
                topic,
                question_en,
                answer_en,
                question_hi,
                answer_hi,
            })
            .collect())
    }
}
