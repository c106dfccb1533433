//! Discord's permission model, pure: the bitfield; a member's base permissions in a guild
//! (the @everyone role, whose id is the guild's, and the member's roles; the owner and
//! ADMINISTRATOR have every permission); a channel's overwrites applied in Discord's
//! documented order (the @everyone overwrite, then the member's roles' overwrites
//! together, deny before allow, then the member's own); the implicit rules (without
//! VIEW_CHANNEL nothing else in the channel counts; without SEND_MESSAGES neither does what
//! sending carries); and the role hierarchy (whom and which roles a member may manage).
//!
//! On the wire a bitfield is a decimal string (Discord's JSON; numbers are accepted too).

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::snowflake::{parse_decimal, whole_number, MAX_DECIMAL};
use crate::Snowflake;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Permissions(pub u64);

impl Permissions {
    pub const NONE: Permissions = Permissions(0);
    pub const CREATE_INSTANT_INVITE: Permissions = Permissions(1 << 0);
    pub const KICK_MEMBERS: Permissions = Permissions(1 << 1);
    pub const BAN_MEMBERS: Permissions = Permissions(1 << 2);
    pub const ADMINISTRATOR: Permissions = Permissions(1 << 3);
    pub const MANAGE_CHANNELS: Permissions = Permissions(1 << 4);
    pub const MANAGE_GUILD: Permissions = Permissions(1 << 5);
    pub const ADD_REACTIONS: Permissions = Permissions(1 << 6);
    pub const VIEW_AUDIT_LOG: Permissions = Permissions(1 << 7);
    pub const VIEW_CHANNEL: Permissions = Permissions(1 << 10);
    pub const SEND_MESSAGES: Permissions = Permissions(1 << 11);
    pub const SEND_TTS_MESSAGES: Permissions = Permissions(1 << 12);
    pub const MANAGE_MESSAGES: Permissions = Permissions(1 << 13);
    pub const EMBED_LINKS: Permissions = Permissions(1 << 14);
    pub const ATTACH_FILES: Permissions = Permissions(1 << 15);
    pub const READ_MESSAGE_HISTORY: Permissions = Permissions(1 << 16);
    pub const MENTION_EVERYONE: Permissions = Permissions(1 << 17);
    pub const USE_EXTERNAL_EMOJIS: Permissions = Permissions(1 << 18);
    pub const CHANGE_NICKNAME: Permissions = Permissions(1 << 26);
    pub const MANAGE_NICKNAMES: Permissions = Permissions(1 << 27);
    pub const MANAGE_ROLES: Permissions = Permissions(1 << 28);
    pub const MANAGE_WEBHOOKS: Permissions = Permissions(1 << 29);
    pub const MANAGE_GUILD_EXPRESSIONS: Permissions = Permissions(1 << 30);
    pub const USE_APPLICATION_COMMANDS: Permissions = Permissions(1 << 31);
    pub const MANAGE_THREADS: Permissions = Permissions(1 << 34);
    pub const CREATE_PUBLIC_THREADS: Permissions = Permissions(1 << 35);
    pub const CREATE_PRIVATE_THREADS: Permissions = Permissions(1 << 36);
    pub const SEND_MESSAGES_IN_THREADS: Permissions = Permissions(1 << 38);
    pub const MODERATE_MEMBERS: Permissions = Permissions(1 << 40);
    pub const SEND_VOICE_MESSAGES: Permissions = Permissions(1 << 46);
    pub const SEND_POLLS: Permissions = Permissions(1 << 49);
    /// Every permission Discord defines (bits 0 to 50): what the owner and administrators have.
    pub const ALL: Permissions = Permissions((1 << 51) - 1);

    /// What a new guild's @everyone role may do (Discord's default for new guilds: view,
    /// talk, react, read history, invite, change one's nickname, ...; nothing that manages).
    pub const EVERYONE_DEFAULT: Permissions = Permissions(
        Self::CREATE_INSTANT_INVITE.0
            | Self::ADD_REACTIONS.0
            | Self::VIEW_CHANNEL.0
            | Self::SEND_MESSAGES.0
            | Self::SEND_TTS_MESSAGES.0
            | Self::EMBED_LINKS.0
            | Self::ATTACH_FILES.0
            | Self::READ_MESSAGE_HISTORY.0
            | Self::MENTION_EVERYONE.0
            | Self::USE_EXTERNAL_EMOJIS.0
            | Self::CHANGE_NICKNAME.0
            | Self::USE_APPLICATION_COMMANDS.0
            | Self::CREATE_PUBLIC_THREADS.0
            | Self::CREATE_PRIVATE_THREADS.0
            | Self::SEND_MESSAGES_IN_THREADS.0
            | Self::SEND_VOICE_MESSAGES.0
            | Self::SEND_POLLS.0,
    );

    /// What only counts with SEND_MESSAGES (Discord denies these implicitly without it).
    const CARRIED_BY_SENDING: Permissions =
        Permissions(Self::SEND_TTS_MESSAGES.0 | Self::EMBED_LINKS.0 | Self::ATTACH_FILES.0 | Self::MENTION_EVERYONE.0);

    pub const fn contains(self, other: Permissions) -> bool {
        self.0 & other.0 == other.0
    }

    pub const fn union(self, other: Permissions) -> Permissions {
        Permissions(self.0 | other.0)
    }

    /// `self` with `deny` taken away and then `allow` added: one overwrite step.
    pub const fn overwrite(self, allow: Permissions, deny: Permissions) -> Permissions {
        Permissions((self.0 & !deny.0) | allow.0)
    }

    /// Bits Discord does not define are dropped (input from clients).
    pub const fn known(self) -> Permissions {
        Permissions(self.0 & Self::ALL.0)
    }
}

impl std::ops::BitOr for Permissions {
    type Output = Permissions;
    fn bitor(self, rhs: Permissions) -> Permissions {
        self.union(rhs)
    }
}

impl Serialize for Permissions {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

#[cfg(feature = "schema")]
impl schemars::JsonSchema for Permissions {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Permissions".into()
    }

    /// A bitfield as a decimal string (taken as a JSON integer too).
    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        crate::snowflake::decimal_schema(generator)
    }
}

impl<'de> Deserialize<'de> for Permissions {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Permissions, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Wire {
            Text(String),
            Number(u64),
            Fraction(f64),
        }
        let bits = match Wire::deserialize(d)? {
            Wire::Number(n) => Some(n).filter(|n| *n <= MAX_DECIMAL),
            // A whole number written with a fraction (`12.0`), exactly representable.
            Wire::Fraction(f) => whole_number(f).and_then(|n| u64::try_from(n).ok()),
            Wire::Text(t) => parse_decimal(&t),
        };
        bits.map(Permissions).ok_or_else(|| serde::de::Error::custom("a permission bitfield"))
    }
}

/// Whom a channel overwrite is for (Discord's `type`: 0 role, 1 member).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OverwriteKind {
    Role,
    Member,
}

impl Serialize for OverwriteKind {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u8(match self {
            OverwriteKind::Role => 0,
            OverwriteKind::Member => 1,
        })
    }
}

#[cfg(feature = "schema")]
impl schemars::JsonSchema for OverwriteKind {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "OverwriteKind".into()
    }

    /// 0 for a role, 1 for a member.
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({ "type": "integer", "enum": [0, 1] })
    }
}

impl<'de> Deserialize<'de> for OverwriteKind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<OverwriteKind, D::Error> {
        match u8::deserialize(d)? {
            0 => Ok(OverwriteKind::Role),
            1 => Ok(OverwriteKind::Member),
            _ => Err(serde::de::Error::custom("overwrite type is 0 (role) or 1 (member)")),
        }
    }
}

/// A channel's permission overwrite for a role (the @everyone role's id is the guild's)
/// or a member, in Discord's JSON shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Overwrite {
    pub id: Snowflake,
    #[serde(rename = "type")]
    pub kind: OverwriteKind,
    pub allow: Permissions,
    pub deny: Permissions,
}

/// What the computation needs of a role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoleGrant {
    pub id: Snowflake,
    /// Higher is more powerful; @everyone is 0.
    pub position: i32,
    pub permissions: Permissions,
}

/// A member as the computation sees it: who, and which of the guild's roles they have
/// (@everyone is implied).
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    pub user: Snowflake,
    pub roles: &'a [Snowflake],
}

/// The guild's side: its id (the @everyone role's id too), owner, and roles.
#[derive(Debug, Clone, Copy)]
pub struct GuildRoles<'a> {
    pub guild: Snowflake,
    pub owner: Snowflake,
    /// Every role of the guild, @everyone included.
    pub roles: &'a [RoleGrant],
}

impl GuildRoles<'_> {
    fn role(&self, id: Snowflake) -> Option<&RoleGrant> {
        self.roles.iter().find(|r| r.id == id)
    }

    /// The member's permissions in the guild, before any channel's overwrites.
    pub fn base(&self, member: Subject<'_>) -> Permissions {
        if member.user == self.owner {
            return Permissions::ALL;
        }
        let everyone = self.role(self.guild).map_or(Permissions::NONE, |r| r.permissions);
        let granted = member.roles.iter().filter_map(|id| self.role(*id)).fold(everyone, |p, r| p | r.permissions);
        if granted.contains(Permissions::ADMINISTRATOR) {
            return Permissions::ALL;
        }
        granted
    }

    /// The member's permissions in a channel with these overwrites.
    pub fn in_channel(&self, member: Subject<'_>, overwrites: &[Overwrite]) -> Permissions {
        let base = self.base(member);
        if base.contains(Permissions::ADMINISTRATOR) {
            return Permissions::ALL; // the owner too: overwrites never apply to them
        }
        let mut permissions = base;
        if let Some(everyone) = overwrites.iter().find(|o| o.kind == OverwriteKind::Role && o.id == self.guild) {
            permissions = permissions.overwrite(everyone.allow, everyone.deny);
        }
        let (mut allow, mut deny) = (Permissions::NONE, Permissions::NONE);
        for o in overwrites.iter().filter(|o| o.kind == OverwriteKind::Role && member.roles.contains(&o.id)) {
            allow = allow | o.allow;
            deny = deny | o.deny;
        }
        permissions = permissions.overwrite(allow, deny);
        if let Some(own) = overwrites.iter().find(|o| o.kind == OverwriteKind::Member && o.id == member.user) {
            permissions = permissions.overwrite(own.allow, own.deny);
        }
        implicit(permissions)
    }

    /// The position of the member's highest role (0: only @everyone); the owner is above all.
    pub fn highest(&self, member: Subject<'_>) -> i64 {
        if member.user == self.owner {
            return i64::MAX;
        }
        member.roles.iter().filter_map(|id| self.role(*id)).map(|r| i64::from(r.position)).max().unwrap_or(0)
    }

    /// May `actor` act on `target` (kick, ban, change their roles or nickname)? Only from
    /// above: the owner on anyone else, others on members whose highest role is lower.
    pub fn outranks(&self, actor: Subject<'_>, target: Subject<'_>) -> bool {
        actor.user != target.user && target.user != self.owner && self.highest(actor) > self.highest(target)
    }

    /// May `actor` (with MANAGE_ROLES) edit, assign or delete `role`? Only roles below
    /// their highest one; never @everyone's assignment.
    pub fn may_manage_role(&self, actor: Subject<'_>, role: &RoleGrant) -> bool {
        self.highest(actor) > i64::from(role.position)
    }
}

/// Discord's implicit denials in a channel.
fn implicit(p: Permissions) -> Permissions {
    if !p.contains(Permissions::VIEW_CHANNEL) {
        return Permissions::NONE;
    }
    if !p.contains(Permissions::SEND_MESSAGES) {
        return Permissions(p.0 & !Permissions::CARRIED_BY_SENDING.0);
    }
    p
}

/// May someone with `actor` permissions grant `wanted` (to a role or an overwrite)? Only
/// what they have themselves, unless they are an administrator.
pub fn may_grant(actor: Permissions, wanted: Permissions) -> bool {
    actor.contains(Permissions::ADMINISTRATOR) || actor.contains(wanted)
}

/// A member's roles, sorted: whom a channel's permissions are the same for.
type RoleSet = Box<[Snowflake]>;

/// Channel permissions per role set, for one guild. Channel permissions depend on the
/// member's role set, not on the member (unless the channel has an overwrite for that
/// member, or they own the guild), so whoever keeps a guild caches them per (channel, role
/// set) and drops the cache when a role or an overwrite changes.
#[derive(Debug, Default)]
pub struct PermissionCache {
    by_channel:
        std::cell::RefCell<std::collections::HashMap<Snowflake, std::collections::HashMap<RoleSet, Permissions>>>,
}

impl PermissionCache {
    /// Role sets cached per channel, at most: a guild whose members hold many different
    /// role combinations computes the rest each time rather than growing without bound.
    pub const MAX_ROLE_SETS_PER_CHANNEL: usize = 1024;

    /// The permissions of `roles` (sorted) in `channel`, computed by `compute` on a miss.
    pub fn get_or_compute(
        &self,
        channel: Snowflake,
        roles: &[Snowflake],
        compute: impl FnOnce() -> Permissions,
    ) -> Permissions {
        debug_assert!(roles.is_sorted(), "a role set is sorted: it is the cache key");
        let mut cache = self.by_channel.borrow_mut();
        let per_set = cache.entry(channel).or_default();
        if let Some(p) = per_set.get(roles) {
            return *p;
        }
        let p = compute();
        if per_set.len() < Self::MAX_ROLE_SETS_PER_CHANNEL {
            per_set.insert(roles.into(), p);
        }
        p
    }

    /// Role sets cached for `channel`.
    pub fn cached(&self, channel: Snowflake) -> usize {
        self.by_channel.borrow().get(&channel).map_or(0, |m| m.len())
    }

    pub fn clear(&self) {
        self.by_channel.borrow_mut().clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_answers_per_role_set_and_stays_bounded() {
        let cache = PermissionCache::default();
        let computed = std::cell::Cell::new(0);
        let compute = || {
            computed.set(computed.get() + 1);
            Permissions::VIEW_CHANNEL
        };
        let channel = Snowflake(1);
        for _ in 0..3 {
            assert_eq!(
                cache.get_or_compute(channel, &[Snowflake(7), Snowflake(9)], compute),
                Permissions::VIEW_CHANNEL
            );
        }
        assert_eq!(computed.get(), 1, "one computation per role set");
        let many = PermissionCache::MAX_ROLE_SETS_PER_CHANNEL as u64 + 100;
        for set in 0..many {
            cache.get_or_compute(channel, &[Snowflake(set)], compute);
        }
        assert_eq!(cache.cached(channel), PermissionCache::MAX_ROLE_SETS_PER_CHANNEL);
        let before = computed.get();
        cache.get_or_compute(channel, &[Snowflake(many - 1)], compute);
        assert_eq!(computed.get(), before + 1, "beyond the bound: computed, not cached");
        cache.clear();
        assert_eq!(cache.cached(channel), 0);
    }

    const GUILD: Snowflake = Snowflake(100);
    const OWNER: Snowflake = Snowflake(1);
    const USER: Snowflake = Snowflake(2);
    const MODS: Snowflake = Snowflake(201);
    const MUTED: Snowflake = Snowflake(202);
    const ADMINS: Snowflake = Snowflake(203);

    fn roles(everyone: Permissions) -> Vec<RoleGrant> {
        vec![
            RoleGrant { id: GUILD, position: 0, permissions: everyone },
            RoleGrant { id: MODS, position: 2, permissions: Permissions::MANAGE_MESSAGES | Permissions::KICK_MEMBERS },
            RoleGrant { id: MUTED, position: 1, permissions: Permissions::NONE },
            RoleGrant { id: ADMINS, position: 3, permissions: Permissions::ADMINISTRATOR },
        ]
    }

    /// An overwrite choice for one permission: none, allow or deny.
    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Ow {
        Unset,
        Allow,
        Deny,
    }

    fn overwrite(id: Snowflake, kind: OverwriteKind, choice: Ow, bit: Permissions) -> Option<Overwrite> {
        let (allow, deny) = match choice {
            Ow::Unset => return None,
            Ow::Allow => (bit, Permissions::NONE),
            Ow::Deny => (Permissions::NONE, bit),
        };
        Some(Overwrite { id, kind, allow, deny })
    }

    /// Discord's documented order, stated per permission as precedence: the owner and
    /// administrators have everything; otherwise the member's own overwrite decides if
    /// there is one, else the member's roles' overwrites (an allow on any of them beats a
    /// deny on another), else the @everyone overwrite, else the roles; and without
    /// VIEW_CHANNEL nothing counts.
    fn expected(owner: bool, admin: bool, base: bool, everyone: Ow, by_roles: [Ow; 2], member: Ow) -> bool {
        if owner || admin {
            return true;
        }
        if member != Ow::Unset {
            return member == Ow::Allow;
        }
        if by_roles.contains(&Ow::Allow) {
            return true;
        }
        if by_roles.contains(&Ow::Deny) {
            return false;
        }
        if everyone != Ow::Unset {
            return everyone == Ow::Allow;
        }
        base
    }

    /// Every combination of owner, administrator role, base grant and the overwrites of
    /// @everyone, two of the member's roles and the member, for one permission and for
    /// VIEW_CHANNEL itself.
    #[test]
    fn the_permission_matrix_follows_discords_order() {
        let choices = [Ow::Unset, Ow::Allow, Ow::Deny];
        let mut cases = 0;
        for bit in [Permissions::SEND_MESSAGES, Permissions::VIEW_CHANNEL] {
            for owner in [false, true] {
                for admin in [false, true] {
                    for base in [false, true] {
                        for everyone in choices {
                            for role_a in choices {
                                for role_b in choices {
                                    for member in choices {
                                        let everyone_perms = if base {
                                            Permissions::VIEW_CHANNEL | bit
                                        } else {
                                            Permissions(Permissions::VIEW_CHANNEL.0 & !bit.0)
                                        };
                                        let guild_roles = roles(everyone_perms);
                                        let user = if owner { OWNER } else { USER };
                                        let mut member_roles = vec![MODS, MUTED];
                                        if admin {
                                            member_roles.push(ADMINS);
                                        }
                                        let overwrites: Vec<Overwrite> = [
                                            overwrite(GUILD, OverwriteKind::Role, everyone, bit),
                                            overwrite(MODS, OverwriteKind::Role, role_a, bit),
                                            overwrite(MUTED, OverwriteKind::Role, role_b, bit),
                                            overwrite(user, OverwriteKind::Member, member, bit),
                                        ]
                                        .into_iter()
                                        .flatten()
                                        .collect();
                                        let g = GuildRoles { guild: GUILD, owner: OWNER, roles: &guild_roles };
                                        let got = g.in_channel(Subject { user, roles: &member_roles }, &overwrites);
                                        let want = expected(owner, admin, base, everyone, [role_a, role_b], member);
                                        let case = format!(
                                            "{bit:?} owner={owner} admin={admin} base={base} everyone={everyone:?} roles={role_a:?},{role_b:?} member={member:?}"
                                        );
                                        assert_eq!(got.contains(bit), want, "{case}");
                                        if bit == Permissions::VIEW_CHANNEL && !want {
                                            assert_eq!(got, Permissions::NONE, "no view, nothing: {case}");
                                        }
                                        cases += 1;
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        assert_eq!(cases, 2 * 2 * 2 * 2 * 81);
    }

    #[test]
    fn overwrites_of_roles_the_member_lacks_or_of_other_members_do_not_apply() {
        let guild_roles = roles(Permissions::EVERYONE_DEFAULT);
        let g = GuildRoles { guild: GUILD, owner: OWNER, roles: &guild_roles };
        let deny_send = |id, kind| Overwrite { id, kind, allow: Permissions::NONE, deny: Permissions::SEND_MESSAGES };
        let others = [deny_send(MODS, OverwriteKind::Role), deny_send(Snowflake(3), OverwriteKind::Member)];
        let plain = Subject { user: USER, roles: &[] };
        assert!(g.in_channel(plain, &others).contains(Permissions::SEND_MESSAGES));
        // A role overwrite with the guild's id is @everyone's; a member overwrite with the
        // same id is not.
        let everyone_as_member = [deny_send(GUILD, OverwriteKind::Member)];
        assert!(g.in_channel(plain, &everyone_as_member).contains(Permissions::SEND_MESSAGES));
    }

    #[test]
    fn without_send_messages_what_sending_carries_goes_too() {
        let guild_roles = roles(Permissions::EVERYONE_DEFAULT);
        let g = GuildRoles { guild: GUILD, owner: OWNER, roles: &guild_roles };
        let deny = [Overwrite {
            id: GUILD,
            kind: OverwriteKind::Role,
            allow: Permissions::NONE,
            deny: Permissions::SEND_MESSAGES,
        }];
        let p = g.in_channel(Subject { user: USER, roles: &[] }, &deny);
        assert!(!p.contains(Permissions::MENTION_EVERYONE) && !p.contains(Permissions::ATTACH_FILES));
        assert!(p.contains(Permissions::READ_MESSAGE_HISTORY | Permissions::ADD_REACTIONS));
    }

    #[test]
    fn base_permissions_add_up_roles_and_administrator_or_owner_have_all() {
        let guild_roles = roles(Permissions::EVERYONE_DEFAULT);
        let g = GuildRoles { guild: GUILD, owner: OWNER, roles: &guild_roles };
        let mod_perms = g.base(Subject { user: USER, roles: &[MODS] });
        assert!(mod_perms.contains(Permissions::EVERYONE_DEFAULT | Permissions::KICK_MEMBERS));
        assert!(!mod_perms.contains(Permissions::BAN_MEMBERS));
        assert_eq!(g.base(Subject { user: USER, roles: &[ADMINS] }), Permissions::ALL);
        assert_eq!(g.base(Subject { user: OWNER, roles: &[] }), Permissions::ALL);
        assert_eq!(
            g.base(Subject { user: USER, roles: &[Snowflake(999)] }),
            Permissions::EVERYONE_DEFAULT,
            "unknown role"
        );
    }

    #[test]
    fn members_act_only_on_those_below_them() {
        let guild_roles = roles(Permissions::EVERYONE_DEFAULT);
        let g = GuildRoles { guild: GUILD, owner: OWNER, roles: &guild_roles };
        let (owner, admin, moderator, muted, plain) = (
            Subject { user: OWNER, roles: &[] },
            Subject { user: Snowflake(5), roles: &[ADMINS] },
            Subject { user: Snowflake(6), roles: &[MODS] },
            Subject { user: Snowflake(7), roles: &[MUTED] },
            Subject { user: Snowflake(8), roles: &[] },
        );
        assert!(g.outranks(owner, admin) && g.outranks(admin, moderator) && g.outranks(moderator, muted));
        assert!(!g.outranks(moderator, admin) && !g.outranks(admin, owner), "never upwards, never the owner");
        assert!(!g.outranks(plain, Subject { user: Snowflake(9), roles: &[] }), "equals cannot act on each other");
        assert!(!g.outranks(moderator, moderator), "not on oneself");
        let mods = guild_roles[1];
        assert!(
            g.may_manage_role(admin, &mods) && !g.may_manage_role(moderator, &mods),
            "only roles below one's highest"
        );
        assert!(may_grant(Permissions::MANAGE_ROLES | Permissions::KICK_MEMBERS, Permissions::KICK_MEMBERS));
        assert!(!may_grant(Permissions::MANAGE_ROLES, Permissions::BAN_MEMBERS));
        assert!(may_grant(Permissions::ALL, Permissions::BAN_MEMBERS));
    }

    #[test]
    fn bitfields_are_decimal_strings_on_the_wire() {
        let o = Overwrite {
            id: Snowflake(7),
            kind: OverwriteKind::Member,
            allow: Permissions(1024),
            deny: Permissions(2048),
        };
        let json = serde_json::to_value(o).unwrap();
        assert_eq!(json, serde_json::json!({ "id": "7", "type": 1, "allow": "1024", "deny": "2048" }));
        let back: Overwrite =
            serde_json::from_value(serde_json::json!({ "id": "7", "type": 0, "allow": 1024, "deny": "0" })).unwrap();
        assert_eq!((back.kind, back.allow, back.deny), (OverwriteKind::Role, Permissions(1024), Permissions::NONE));
        assert!(serde_json::from_value::<Overwrite>(
            serde_json::json!({ "id": "7", "type": 2, "allow": "0", "deny": "0" })
        )
        .is_err());
        assert!(serde_json::from_value::<Permissions>(serde_json::json!("12x")).is_err());
        assert_eq!(Permissions(u64::MAX).known(), Permissions::ALL);
    }
}
