//! What each object is called in the API, and how its JSON becomes a row.

use pgdw_fdw_api::{Cell, Column, ColumnType};
use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Object {
    Users,
    Organizations,
    OrganizationMemberships,
    Invitations,
    OrganizationInvitations,
}

impl Object {
    pub fn parse(s: &str) -> Option<Object> {
        Some(match s {
            "users" => Object::Users,
            "organizations" => Object::Organizations,
            "organization_memberships" => Object::OrganizationMemberships,
            "invitations" => Object::Invitations,
            "organization_invitations" => Object::OrganizationInvitations,
            _ => return None,
        })
    }

    pub fn path(self) -> &'static str {
        match self {
            Object::Users => "/users",
            Object::Organizations => "/organizations",
            Object::OrganizationMemberships => "/organization_memberships",
            Object::Invitations => "/invitations",
            Object::OrganizationInvitations => "/organization_invitations",
        }
    }

    /// Whether a page is a bare array (users, invitations) or `{data, total_count}`.
    pub fn bare_array(self) -> bool {
        matches!(self, Object::Users | Object::Invitations)
    }

    /// The column holding the object's own id.
    pub fn id_column(self) -> &'static str {
        match self {
            Object::Users => "user_id",
            Object::Organizations => "organization_id",
            Object::OrganizationMemberships => "membership_id",
            Object::Invitations | Object::OrganizationInvitations => "invitation_id",
        }
    }
}

/// The primary address, or NULL when the user has none (the first listed may be unverified:
/// it is not the primary one).
fn primary_email(obj: &Value) -> Value {
    let Some(primary) = obj.get("primary_email_address_id").and_then(Value::as_str) else {
        return Value::Null;
    };
    obj.get("email_addresses")
        .and_then(Value::as_array)
        .and_then(|list| {
            list.iter()
                .find(|e| e.get("id").and_then(Value::as_str) == Some(primary))
        })
        .and_then(|e| e.get("email_address").cloned())
        .unwrap_or(Value::Null)
}

/// The cell for column `col` of an object's JSON.
pub fn cell(object: Object, col: &Column, obj: &Value) -> Cell {
    let name = col.name.as_str();
    if name == "attrs" {
        return Cell::Json(obj.clone());
    }
    if name == object.id_column() {
        return Cell::from(obj.get("id").cloned().unwrap_or(Value::Null));
    }
    let v = match (object, name) {
        (Object::Users, "email") => primary_email(obj),
        (Object::Users, "gender") => Value::Null, // not in Clerk's API; kept for Tembo's column list
        (Object::Users, "phone_numbers") => {
            let phones: Vec<Cell> = obj
                .get("phone_numbers")
                .and_then(Value::as_array)
                .map(|l| {
                    l.iter()
                        .filter_map(|p| p.get("phone_number").cloned())
                        .map(Cell::from)
                        .collect()
                })
                .unwrap_or_default();
            return Cell::List(phones);
        }
        (Object::OrganizationMemberships, "user_id") => obj
            .pointer("/public_user_data/user_id")
            .cloned()
            .unwrap_or(Value::Null),
        (Object::OrganizationMemberships, "organization_id") => obj
            .pointer("/organization/id")
            .cloned()
            .unwrap_or(Value::Null),
        (Object::Invitations | Object::OrganizationInvitations, "email") => {
            obj.get("email_address").cloned().unwrap_or(Value::Null)
        }
        _ => obj.get(name).cloned().unwrap_or(Value::Null),
    };
    // Clerk's timestamps are epoch milliseconds.
    if name.ends_with("_at") {
        if let Some(ms) = v.as_i64() {
            return Cell::EpochMillis(ms);
        }
    }
    // JSON columns keep objects; text columns get scalars as text.
    match (&col.ty, v) {
        (ColumnType::Json | ColumnType::Jsonb, v) => Cell::Json(v),
        (_, v) => Cell::from(v),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn col(name: &str, ty: ColumnType) -> Column {
        Column {
            name: name.into(),
            ty,
        }
    }

    #[test]
    fn email_is_the_primary_address_not_the_first() {
        let u = json!({"id": "user_1", "primary_email_address_id": "idn_2",
                       "email_addresses": [{"id": "idn_1", "email_address": "old@x"}, {"id": "idn_2", "email_address": "new@x"}]});
        assert_eq!(
            cell(Object::Users, &col("email", ColumnType::Text), &u),
            Cell::Text("new@x".into())
        );
        assert_eq!(
            cell(Object::Users, &col("user_id", ColumnType::Text), &u),
            Cell::Text("user_1".into())
        );
        assert_eq!(
            cell(Object::Users, &col("gender", ColumnType::Text), &u),
            Cell::Null
        );
        // No primary address: NULL, as the README says, not the first (maybe unverified) one.
        let none = json!({"id": "user_2", "primary_email_address_id": null,
                          "email_addresses": [{"id": "idn_3", "email_address": "unverified@x"}]});
        assert_eq!(
            cell(Object::Users, &col("email", ColumnType::Text), &none),
            Cell::Null
        );
    }

    #[test]
    fn times_are_milliseconds_and_memberships_reach_into_nested_objects() {
        let m = json!({"id": "orgmem_1", "created_at": 1716883200000i64, "role": "org:admin",
                       "organization": {"id": "org_9"}, "public_user_data": {"user_id": "user_3"}});
        let o = Object::OrganizationMemberships;
        assert_eq!(
            cell(o, &col("created_at", ColumnType::Int8), &m),
            Cell::EpochMillis(1716883200000)
        );
        assert_eq!(
            cell(o, &col("organization_id", ColumnType::Text), &m),
            Cell::Text("org_9".into())
        );
        assert_eq!(
            cell(o, &col("user_id", ColumnType::Text), &m),
            Cell::Text("user_3".into())
        );
        assert_eq!(
            cell(o, &col("membership_id", ColumnType::Text), &m),
            Cell::Text("orgmem_1".into())
        );
    }
}
