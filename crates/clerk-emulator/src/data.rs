//! A deterministic population of users, organizations, memberships and invitations.

use serde_json::{json, Value};

/// SplitMix64: a tiny PRNG whose output never changes between versions (unlike `rand`'s
/// StdRng), so a seed means the same data forever.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
    /// A Clerk-style id: prefix + 27 base62 characters.
    pub fn id(&mut self, prefix: &str) -> String {
        const B62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
        let mut s = String::with_capacity(prefix.len() + 28);
        s.push_str(prefix);
        s.push('_');
        for _ in 0..27 {
            s.push(B62[self.below(62) as usize] as char);
        }
        s
    }
}

/// How big a population to make.
#[derive(Debug, Clone)]
pub struct Spec {
    pub seed: u64,
    pub users: usize,
    pub organizations: usize,
    pub memberships: usize,
    pub invitations: usize,
    /// Everything is created within `days` before `end_ms` (epoch milliseconds).
    pub end_ms: i64,
    pub days: i64,
}

impl Default for Spec {
    fn default() -> Self {
        Spec {
            seed: 42,
            users: 200,
            organizations: 40,
            memberships: 300,
            invitations: 30,
            end_ms: 1_767_225_600_000, // 2026-01-01
            days: 180,
        }
    }
}

#[derive(Debug, Clone)]
pub struct User {
    pub id: String,
    pub first_name: String,
    pub last_name: String,
    pub username: Option<String>,
    /// (id, address); the primary one is not always first.
    pub emails: Vec<(String, String)>,
    pub primary_email_id: String,
    pub phones: Vec<(String, String)>,
    pub created_at: i64,
    pub updated_at: i64,
    pub last_sign_in_at: Option<i64>,
    pub plan: &'static str,
}

#[derive(Debug, Clone)]
pub struct Organization {
    pub id: String,
    pub name: String,
    pub slug: String,
    pub created_by: String,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone)]
pub struct Membership {
    pub id: String,
    pub organization: usize,
    pub user: usize,
    pub role: &'static str,
    pub created_at: i64,
}

#[derive(Debug, Clone)]
pub struct Invitation {
    pub id: String,
    pub email: String,
    pub status: &'static str,
    pub organization: Option<usize>,
    pub created_at: i64,
}

#[derive(Debug, Clone)]
pub struct Dataset {
    pub users: Vec<User>,
    pub organizations: Vec<Organization>,
    pub memberships: Vec<Membership>,
    pub invitations: Vec<Invitation>,
    rng: Rng,
    /// The end of the generated history (epoch milliseconds).
    pub end_ms: i64,
}

const FIRST: &[&str] = &[
    "Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Radia", "Linus",
    "Margaret", "Dennis", "Sophie", "Tim", "Hedy", "John",
];
const LAST: &[&str] = &[
    "Lovelace",
    "Hopper",
    "Turing",
    "Dijkstra",
    "Liskov",
    "Knuth",
    "Allen",
    "Thompson",
    "Perlman",
    "Torvalds",
    "Hamilton",
    "Ritchie",
    "Wilson",
    "Berners-Lee",
    "Lamarr",
    "Backus",
];
const COMPANY: &[&str] = &[
    "Acme",
    "Globex",
    "Initech",
    "Umbrella",
    "Hooli",
    "Stark",
    "Wayne",
    "Tyrell",
    "Cyberdyne",
    "Soylent",
    "Wonka",
    "Aperture",
];
const PLANS: &[&str] = &["free", "free", "pro", "enterprise"];
const SUFFIX: &[&str] = &[
    "Labs",
    "Corp",
    "Systems",
    "Analytics",
    "Cloud",
    "Data",
    "AI",
    "Works",
];

impl Dataset {
    pub fn generate(spec: &Spec) -> Dataset {
        let mut rng = Rng::new(spec.seed);
        let start = spec.end_ms - spec.days * 86_400_000;
        let span = (spec.end_ms - start).max(1) as u64;
        let mut created: Vec<i64> = (0..spec.users)
            .map(|_| start + rng.below(span) as i64)
            .collect();
        created.sort();
        let mut d = Dataset {
            users: Vec::new(),
            organizations: Vec::new(),
            memberships: Vec::new(),
            invitations: Vec::new(),
            rng,
            end_ms: spec.end_ms,
        };
        for c in created {
            d.add_user(c);
        }
        for _ in 0..spec.organizations {
            let creator = d.rng.below(d.users.len().max(1) as u64) as usize;
            let after = d.users.get(creator).map(|u| u.created_at).unwrap_or(start);
            let c = after + d.rng.below((spec.end_ms - after).max(1) as u64) as i64;
            let name = format!(
                "{} {} {}",
                d.rng.pick(COMPANY),
                d.rng.pick(SUFFIX),
                d.organizations.len() + 1
            );
            let slug = name.to_lowercase().replace(' ', "-");
            let id = d.rng.id("org");
            d.organizations.push(Organization {
                id,
                name,
                slug,
                created_by: d
                    .users
                    .get(creator)
                    .map(|u| u.id.clone())
                    .unwrap_or_default(),
                created_at: c,
                updated_at: c,
            });
            d.memberships.push(Membership {
                id: String::new(),
                organization: d.organizations.len() - 1,
                user: creator,
                role: "org:admin",
                created_at: c,
            });
        }
        let mut seen: std::collections::HashSet<(usize, usize)> = d
            .memberships
            .iter()
            .map(|m| (m.organization, m.user))
            .collect();
        let mut attempts = 0;
        while d.memberships.len() < spec.memberships
            && !d.organizations.is_empty()
            && attempts < spec.memberships * 20
        {
            attempts += 1;
            let o = d.rng.below(d.organizations.len() as u64) as usize;
            let u = d.rng.below(d.users.len() as u64) as usize;
            if !seen.insert((o, u)) {
                continue;
            }
            let after = d.organizations[o].created_at.max(d.users[u].created_at);
            let c = after + d.rng.below((spec.end_ms - after).max(1) as u64) as i64;
            d.memberships.push(Membership {
                id: String::new(),
                organization: o,
                user: u,
                role: "org:member",
                created_at: c,
            });
        }
        d.memberships.sort_by_key(|m| m.created_at);
        for m in d.memberships.iter_mut() {
            m.id = d.rng.id("orgmem");
        }
        for i in 0..spec.invitations {
            let c = start + d.rng.below(span) as i64;
            let organization = (i % 2 == 1 && !d.organizations.is_empty())
                .then(|| d.rng.below(d.organizations.len() as u64) as usize);
            let status = *d.rng.pick(&["pending", "accepted", "revoked", "expired"]);
            d.invitations.push(Invitation {
                id: d.rng.id(if organization.is_some() {
                    "orginv"
                } else {
                    "inv"
                }),
                email: format!("invitee{i}@example.com"),
                status,
                organization,
                created_at: c,
            });
        }
        d.invitations.sort_by_key(|i| i.created_at);
        d
    }

    /// Append a user created at `created_at` (a sign-up).
    pub fn add_user(&mut self, created_at: i64) {
        let n = self.users.len();
        let first = self.rng.pick(FIRST).to_string();
        let last = self.rng.pick(LAST).to_string();
        let id = self.rng.id("user");
        let primary = (
            self.rng.id("idn"),
            format!(
                "{}.{}.{n}@example.com",
                first.to_lowercase(),
                last.to_lowercase().replace('-', "")
            ),
        );
        let mut emails = vec![primary.clone()];
        if n % 7 == 3 {
            // A secondary address listed first: the primary must be found by id.
            emails.insert(0, (self.rng.id("idn"), format!("old.{n}@example.org")));
        }
        let phones = if n.is_multiple_of(3) {
            vec![(self.rng.id("idn"), format!("+1555{:07}", n))]
        } else {
            Vec::new()
        };
        let signed_in = (n % 5 != 4).then(|| created_at + self.rng.below(30 * 86_400_000) as i64);
        self.users.push(User {
            id,
            username: n
                .is_multiple_of(4)
                .then(|| format!("{}{n}", first.to_lowercase())),
            first_name: first,
            last_name: last,
            primary_email_id: primary.0,
            emails,
            phones,
            created_at,
            updated_at: signed_in
                .unwrap_or(created_at)
                .min(self.end_ms.max(created_at)),
            last_sign_in_at: signed_in,
            plan: PLANS[self.rng.below(PLANS.len() as u64) as usize],
        });
    }

    pub fn user_json(&self, u: &User) -> Value {
        let emails: Vec<Value> = u
            .emails
            .iter()
            .map(|(id, addr)| {
                json!({"id": id, "object": "email_address", "email_address": addr, "reserved": false,
                       "verification": {"object": "verification_otp", "status": "verified", "strategy": "email_code", "attempts": 1, "expire_at": null},
                       "linked_to": [], "created_at": u.created_at, "updated_at": u.created_at})
            })
            .collect();
        let phones: Vec<Value> = u
            .phones
            .iter()
            .map(|(id, p)| {
                json!({"id": id, "object": "phone_number", "phone_number": p, "reserved_for_second_factor": false,
                       "default_second_factor": false, "reserved": false,
                       "verification": {"status": "verified", "strategy": "phone_code", "attempts": 1, "expire_at": null},
                       "linked_to": [], "backup_codes": null, "created_at": u.created_at, "updated_at": u.created_at})
            })
            .collect();
        json!({
            "id": u.id, "object": "user", "external_id": null,
            "primary_email_address_id": u.primary_email_id,
            "primary_phone_number_id": u.phones.first().map(|p| p.0.clone()),
            "primary_web3_wallet_id": null,
            "username": u.username, "first_name": u.first_name, "last_name": u.last_name, "locale": null,
            "profile_image_url": "https://img.clerk.com/default", "image_url": "https://img.clerk.com/default", "has_image": false,
            "public_metadata": {"plan": u.plan}, "private_metadata": {}, "unsafe_metadata": {},
            "email_addresses": emails, "phone_numbers": phones, "web3_wallets": [], "passkeys": [],
            "password_enabled": true, "two_factor_enabled": false, "totp_enabled": false, "backup_code_enabled": false,
            "mfa_enabled_at": null, "mfa_disabled_at": null, "password_last_updated_at": null,
            "external_accounts": [], "saml_accounts": [], "enterprise_accounts": [],
            "last_sign_in_at": u.last_sign_in_at, "banned": false, "locked": false, "deprovisioned": false,
            "lockout_expires_in_seconds": null, "verification_attempts_remaining": 100,
            "updated_at": u.updated_at, "created_at": u.created_at,
            "delete_self_enabled": true, "create_organization_enabled": true, "create_organizations_limit": null,
            "last_active_at": u.last_sign_in_at.map(|t| t - t % 86_400_000), "legal_accepted_at": null,
            "bypass_client_trust": false, "scim": null
        })
    }

    pub fn members_count(&self, org: usize) -> usize {
        self.memberships
            .iter()
            .filter(|m| m.organization == org)
            .count()
    }

    pub fn organization_json(&self, o: usize, with_count: bool) -> Value {
        let org = &self.organizations[o];
        let mut v = json!({
            "object": "organization", "id": org.id, "name": org.name, "slug": org.slug,
            "image_url": "https://img.clerk.com/default", "has_image": false,
            "max_allowed_memberships": 0, "admin_delete_enabled": true,
            "public_metadata": {}, "private_metadata": {}, "created_by": org.created_by,
            "created_at": org.created_at, "updated_at": org.updated_at
        });
        if with_count {
            v["members_count"] = json!(self.members_count(o));
            v["pending_invitations_count"] = json!(0);
        }
        v
    }

    pub fn membership_json(&self, m: &Membership) -> Value {
        let u = &self.users[m.user];
        let primary = u
            .emails
            .iter()
            .find(|e| e.0 == u.primary_email_id)
            .map(|e| e.1.clone());
        json!({
            "object": "organization_membership", "id": m.id, "role": m.role,
            "role_name": if m.role == "org:admin" { "Admin" } else { "Member" },
            "permissions": [], "public_metadata": {}, "private_metadata": {},
            "organization": self.organization_json(m.organization, false),
            "public_user_data": {"user_id": u.id, "first_name": u.first_name, "last_name": u.last_name,
                                 "profile_image_url": null, "image_url": "https://img.clerk.com/default",
                                 "has_image": false, "identifier": primary, "username": u.username},
            "created_at": m.created_at, "updated_at": m.created_at
        })
    }

    pub fn invitation_json(&self, i: &Invitation) -> Value {
        match i.organization {
            None => {
                json!({"object": "invitation", "id": i.id, "email_address": i.email, "public_metadata": {},
                           "revoked": i.status == "revoked", "status": i.status, "url": null,
                           "expires_at": i.created_at + 30 * 86_400_000, "created_at": i.created_at, "updated_at": i.created_at})
            }
            Some(o) => {
                // The organization's creator invited them: the spec's inviter_id and
                // public_inviter_data.
                let inviter = self
                    .users
                    .iter()
                    .find(|u| u.id == self.organizations[o].created_by);
                let inviter_data = inviter.map(|u| {
                    json!({"id": u.id, "first_name": u.first_name,
                    "last_name": u.last_name, "image_url": "", "has_image": false,
                    "identifier": u.emails.first().map(|(_, e)| e.clone())})
                });
                json!({"object": "organization_invitation", "id": i.id, "email_address": i.email, "role": "org:member",
                              "inviter_id": inviter.map(|u| u.id.clone()), "public_inviter_data": inviter_data,
                              "role_name": "Member", "organization_id": self.organizations[o].id, "status": i.status,
                              "public_metadata": {}, "private_metadata": {},
                              "public_organization_data": {"id": self.organizations[o].id, "name": self.organizations[o].name,
                                                           "slug": self.organizations[o].slug, "has_image": false},
                              "url": null, "expires_at": i.created_at + 30 * 86_400_000,
                              "created_at": i.created_at, "updated_at": i.created_at})
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_makes_the_same_data() {
        let a = Dataset::generate(&Spec::default());
        let b = Dataset::generate(&Spec::default());
        assert_eq!(a.users[17].id, b.users[17].id);
        assert_eq!(a.memberships.len(), 300);
        assert!(a.users[0].id.starts_with("user_") && a.users[0].id.len() == 32);
        let other = Dataset::generate(&Spec {
            seed: 7,
            ..Spec::default()
        });
        assert_ne!(a.users[0].id, other.users[0].id);
    }

    #[test]
    fn memberships_are_unique_per_user_and_organization() {
        let d = Dataset::generate(&Spec::default());
        let mut pairs: Vec<_> = d
            .memberships
            .iter()
            .map(|m| (m.organization, m.user))
            .collect();
        pairs.sort();
        pairs.dedup();
        assert_eq!(pairs.len(), d.memberships.len());
    }
}
