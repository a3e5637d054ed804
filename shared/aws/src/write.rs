//! Conditional writes to DynamoDB and their one contention policy. Every state transition of a
//! job or a batch is a conditional write; this module reads what one came to (applied, or
//! refused by its condition with the item it saw) and tries again, after a short randomized
//! wait, a write refused for contention (a colliding transaction, throttling) rather than for
//! its condition. A refused condition is a logical "no", never an error; contention that
//! outlasts the tries is `Unavailable`.

use std::future::Future;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::delete_item::DeleteItemError;
use aws_sdk_dynamodb::operation::delete_item::builders::DeleteItemFluentBuilder;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::put_item::builders::PutItemFluentBuilder;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder;
use aws_sdk_dynamodb::types::{TransactWriteItem, Update};
use prism_core::StoreError;
use prism_core::retry::contention_backoff;

use crate::attrs::{Item, unavailable};

/// Tries of a write refused for contention before the caller sees `Unavailable`.
const CONTENTION_TRIES: u32 = 8;

/// What a conditional single-item write came to.
pub enum Written {
    /// Applied; the item as written when `ReturnValue::AllNew` was asked for.
    Applied(Option<Item>),
    /// Its condition failed; the item it saw, when `AllOld` was asked for and it exists.
    Refused(Option<Item>),
}

impl Written {
    /// Applied or not, for writes that need nothing more.
    pub fn applied(self) -> bool {
        matches!(self, Written::Applied(_))
    }
}

/// The single-item errors that carry a refused condition (and the item it saw).
pub trait ConditionRefusal {
    /// `Some(item seen)` when the error is a failed condition.
    fn refused(&self) -> Option<Option<Item>>;
}

impl ConditionRefusal for UpdateItemError {
    fn refused(&self) -> Option<Option<Item>> {
        match self {
            UpdateItemError::ConditionalCheckFailedException(c) => Some(c.item().cloned()),
            _ => None,
        }
    }
}

impl ConditionRefusal for PutItemError {
    fn refused(&self) -> Option<Option<Item>> {
        match self {
            PutItemError::ConditionalCheckFailedException(c) => Some(c.item().cloned()),
            _ => None,
        }
    }
}

impl ConditionRefusal for DeleteItemError {
    fn refused(&self) -> Option<Option<Item>> {
        match self {
            DeleteItemError::ConditionalCheckFailedException(c) => Some(c.item().cloned()),
            _ => None,
        }
    }
}

/// Sends an update (retrying contention) and reads what it came to.
pub async fn update(update: UpdateItemFluentBuilder) -> Result<Written, StoreError> {
    written(retry_contention(|| update.clone().send()).await, |out| {
        out.attributes
    })
}

/// Sends a put (retrying contention) and reads what it came to.
pub async fn put(put: PutItemFluentBuilder) -> Result<Written, StoreError> {
    written(retry_contention(|| put.clone().send()).await, |out| {
        out.attributes
    })
}

/// Sends a delete (retrying contention) and reads what it came to.
pub async fn delete(delete: DeleteItemFluentBuilder) -> Result<Written, StoreError> {
    written(retry_contention(|| delete.clone().send()).await, |out| {
        out.attributes
    })
}

fn written<T, E>(
    result: Result<T, SdkError<E, HttpResponse>>,
    attributes: impl FnOnce(T) -> Option<Item>,
) -> Result<Written, StoreError>
where
    E: ConditionRefusal + std::error::Error + Send + Sync + 'static,
{
    match result {
        Ok(out) => Ok(Written::Applied(attributes(out))),
        Err(err) => match err.as_service_error().and_then(ConditionRefusal::refused) {
            Some(seen) => Ok(Written::Refused(seen)),
            None => Err(unavailable(err)),
        },
    }
}

/// Sends a single-item write again while it collides with a transaction on the same item (the
/// SDK retries throttling itself, but not a transaction conflict).
async fn retry_contention<T, E, F, Fut>(mut send: F) -> Result<T, SdkError<E, HttpResponse>>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, SdkError<E, HttpResponse>>>,
    E: ProvideErrorMetadata,
{
    let mut attempt = 0;
    loop {
        match send().await {
            Err(err)
                if attempt + 1 < CONTENTION_TRIES
                    && err.as_service_error().and_then(ProvideErrorMetadata::code)
                        == Some("TransactionConflictException") =>
            {
                tokio::time::sleep(contention_backoff(attempt)).await;
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// How a canceled transaction is to be read, from its per-item reasons.
enum Cancelled {
    /// A condition failed: the logical "no".
    Condition,
    /// Another transaction or throttling got in the way: worth trying again.
    Contention,
    Fault,
}

fn cancelled(err: &SdkError<TransactWriteItemsError, HttpResponse>) -> Cancelled {
    let Some(TransactWriteItemsError::TransactionCanceledException(c)) = err.as_service_error()
    else {
        return Cancelled::Fault;
    };
    let codes: Vec<&str> = c
        .cancellation_reasons()
        .iter()
        .filter_map(|r| r.code())
        .collect();
    if codes.contains(&"ConditionalCheckFailed") {
        Cancelled::Condition
    } else if codes.iter().any(|c| {
        matches!(
            *c,
            "TransactionConflict" | "ThrottlingError" | "ProvisionedThroughputExceeded"
        )
    }) {
        Cancelled::Contention
    } else {
        Cancelled::Fault
    }
}

/// A conditional update and the writes that must land with it (the outbox put of the event it
/// announces, the usage counters it adds to), all or nothing: true when applied, false when the
/// update's condition refused it. The update is built as for [`update`] (no return values: a
/// transaction has none). With nothing else to write, a plain conditional update.
pub async fn update_with(
    client: &Client,
    update: &UpdateItemFluentBuilder,
    others: Vec<TransactWriteItem>,
) -> Result<bool, StoreError> {
    if others.is_empty() {
        return Ok(self::update(update.clone()).await?.applied());
    }
    let input = update.as_input();
    let step = Update::builder()
        .set_table_name(input.get_table_name().clone())
        .set_key(input.get_key().clone())
        .set_update_expression(input.get_update_expression().clone())
        .set_condition_expression(input.get_condition_expression().clone())
        .set_expression_attribute_names(input.get_expression_attribute_names().clone())
        .set_expression_attribute_values(input.get_expression_attribute_values().clone())
        .build()
        .map_err(unavailable)?;
    let mut items = vec![TransactWriteItem::builder().update(step).build()];
    items.extend(others);
    transact(client, items).await
}

/// Runs a transaction: true when applied, false when a condition refused it. Contention is
/// tried again, since a checkpoint collides with every other one on its batch.
pub async fn transact(client: &Client, items: Vec<TransactWriteItem>) -> Result<bool, StoreError> {
    let mut attempt = 0;
    loop {
        let result = client
            .transact_write_items()
            .set_transact_items(Some(items.clone()))
            .send()
            .await;
        let Err(err) = result else {
            return Ok(true);
        };
        match cancelled(&err) {
            Cancelled::Condition => return Ok(false),
            Cancelled::Contention if attempt + 1 < CONTENTION_TRIES => {
                tokio::time::sleep(contention_backoff(attempt)).await;
                attempt += 1;
            }
            Cancelled::Contention | Cancelled::Fault => return Err(unavailable(err)),
        }
    }
}
