//! What a REST route is: a method and a path template, its handler, its rate-limit bucket,
//! who may call it, what body it takes and what it answers. The table of them is
//! [`super::routes::ROUTES`]; the router, the rate limiter and the OpenAPI description all
//! read that one table.
//!
//! Paths match segment by segment. Where two templates match a path, the one with a literal
//! segment at the first place they differ wins (`messages/search` over `messages/{id}`,
//! `applications/@me` over `applications/{application_id}`), whatever their order.

use std::future::Future;
use std::pin::Pin;

use guildhall_core::Snowflake;
use hyper::Method;
use schemars::{Schema, SchemaGenerator};

use super::ctx::{snowflake, ApiResult, Ctx};
use super::error::ApiError;
use crate::limits::Bucket;

pub type MakeSchema = fn(&mut SchemaGenerator) -> Schema;

/// A route's handler: the request context and the path's parameters.
pub type Handler = for<'a> fn(&'a mut Ctx, &'a Params<'a>) -> Pin<Box<dyn Future<Output = ApiResult> + Send + 'a>>;

/// Makes a [`Handler`] from a body that reads `ctx` and the path's parameters `p`.
macro_rules! handler {
    (|$ctx:ident, $p:ident| $body:expr) => {{
        #[allow(unused_variables)]
        fn handle<'a>(
            $ctx: &'a mut $crate::rest::ctx::Ctx,
            $p: &'a $crate::rest::route::Params<'a>,
        ) -> ::std::pin::Pin<Box<dyn ::std::future::Future<Output = $crate::rest::ctx::ApiResult> + Send + 'a>>
        {
            Box::pin(async move { $body })
        }
        handle as $crate::rest::route::Handler
    }};
}
pub(crate) use handler;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Get,
    Post,
    Put,
    Patch,
    Delete,
}

impl Verb {
    pub fn of(method: &Method) -> Option<Verb> {
        Some(match *method {
            Method::GET => Verb::Get,
            Method::POST => Verb::Post,
            Method::PUT => Verb::Put,
            Method::PATCH => Verb::Patch,
            Method::DELETE => Verb::Delete,
            _ => return None,
        })
    }
    /// As OpenAPI writes it.
    pub fn lowercase(self) -> &'static str {
        match self {
            Verb::Get => "get",
            Verb::Post => "post",
            Verb::Put => "put",
            Verb::Patch => "patch",
            Verb::Delete => "delete",
        }
    }
    /// As HTTP writes it (`Allow`).
    pub fn uppercase(self) -> &'static str {
        match self {
            Verb::Get => "GET",
            Verb::Post => "POST",
            Verb::Put => "PUT",
            Verb::Patch => "PATCH",
            Verb::Delete => "DELETE",
        }
    }
}

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// Anyone (counted against their address's limits).
    None,
    /// A token in `Authorization` (401 before anything else without one).
    Token,
}

/// A query parameter's type.
#[derive(Clone, Copy)]
pub enum Query {
    Id,
    /// An id that must be given.
    RequiredId,
    /// An integer in `min..=max`.
    Int(u32, u32),
    /// Text matching an ECMA-262 pattern.
    Matching(&'static str),
    /// Text matching a pattern, which must be given.
    RequiredMatching(&'static str),
    /// `true` or `false`.
    Bool,
    /// Text of at most this many characters.
    Text(u32),
    /// One of these values.
    OneOf(&'static [&'static str]),
    /// A list (the parameter repeated): of ids, at most this many.
    Ids(u32),
    /// A list of these values.
    ManyOf(&'static [&'static str]),
    /// A list of texts: at most this many, of at most this many characters each.
    Texts(u32, u32),
}

/// What a route reads as its body, and so how much of one it takes at most.
pub enum Body {
    None,
    /// A JSON object, at most `rest.max_body_bytes`; `required: false` for routes that
    /// take an empty body too.
    Json {
        schema: MakeSchema,
        required: bool,
    },
    /// A Wasm component's bytes, at most `plugins.max_component_bytes`.
    Wasm,
}

pub enum Answer {
    Json { status: u16, schema: MakeSchema },
    NoContent,
}

/// One method on one path, and everything about it.
pub struct Route {
    pub verb: Verb,
    /// With `{name}` for each path parameter.
    pub path: &'static str,
    pub handler: Handler,
    /// Discord names a bucket for every route; a bucket without a rate of its own counts
    /// only against the caller's global limit.
    pub bucket: Bucket,
    pub auth: Auth,
    pub query: &'static [(&'static str, Query)],
    pub body: Body,
    pub answer: Answer,
    /// The OpenAPI operation id and summary.
    pub id: &'static str,
    pub summary: &'static str,
}

/// A route that needs a token, takes no body and answers 204; the builders below change that.
pub const fn route(
    verb: Verb,
    path: &'static str,
    bucket: Bucket,
    handler: Handler,
    id: &'static str,
    summary: &'static str,
) -> Route {
    Route {
        verb,
        path,
        handler,
        bucket,
        auth: Auth::Token,
        query: &[],
        body: Body::None,
        answer: Answer::NoContent,
        id,
        summary,
    }
}

impl Route {
    /// Callable without a token.
    pub const fn public(mut self) -> Route {
        self.auth = Auth::None;
        self
    }
    pub const fn query(mut self, query: &'static [(&'static str, Query)]) -> Route {
        self.query = query;
        self
    }
    pub const fn json(mut self, schema: MakeSchema) -> Route {
        self.body = Body::Json { schema, required: true };
        self
    }
    /// A JSON body that may be left out.
    pub const fn optional_json(mut self, schema: MakeSchema) -> Route {
        self.body = Body::Json { schema, required: false };
        self
    }
    pub const fn wasm(mut self) -> Route {
        self.body = Body::Wasm;
        self
    }
    pub const fn ok(mut self, schema: MakeSchema) -> Route {
        self.answer = Answer::Json { status: 200, schema };
        self
    }
    pub const fn created(mut self, schema: MakeSchema) -> Route {
        self.answer = Answer::Json { status: 201, schema };
        self
    }

    /// The path's segments: `Some(name)` for a parameter, `None` for a literal.
    fn segments(&self) -> impl Iterator<Item = (&'static str, Option<&'static str>)> {
        self.path
            .split('/')
            .filter(|s| !s.is_empty())
            .map(|s| (s, s.strip_prefix('{').and_then(|s| s.strip_suffix('}'))))
    }

    /// Does the template match `path`'s segments? The rank says how literally: one bit per
    /// segment, the first segment highest, set where the template has a literal; of two
    /// templates matching one path (as long as each other), the higher rank has a literal
    /// where the other has a parameter first.
    fn matches(&self, path: &[&str]) -> Option<u64> {
        let mut rank = 0u64;
        let mut given = path.iter();
        for (segment, param) in self.segments() {
            let p = given.next()?;
            rank <<= 1;
            match param {
                Some(_) => {}
                None if segment == *p => rank |= 1,
                None => return None,
            }
        }
        given.next().is_none().then_some(rank)
    }

    /// The major parameter of its bucket: the channel or guild in the path (0 for none).
    pub fn major(&self, params: &Params) -> u64 {
        if !self.bucket.per_major() {
            return 0;
        }
        ["channel_id", "guild_id"]
            .iter()
            .find_map(|name| params.get(name))
            .and_then(|id| id.parse::<u64>().ok())
            .unwrap_or(0)
    }
}

/// The path parameters of a matched route, by the names its template gives them.
pub struct Params<'a> {
    route: &'static Route,
    path: &'a [&'a str],
}

impl<'a> Params<'a> {
    pub fn get(&self, name: &str) -> Option<&'a str> {
        self.route.segments().zip(self.path.iter()).find(|((_, p), _)| *p == Some(name)).map(|(_, value)| *value)
    }
    /// A parameter's text (percent-decoded). A name the template lacks is a bug in the
    /// table, found by the test that calls every route; it reads as empty.
    pub fn text(&self, name: &str) -> &'a str {
        let value = self.get(name);
        debug_assert!(value.is_some(), "{} has no parameter {name}", self.route.path);
        value.unwrap_or("")
    }
    /// A parameter that must be an id (400 otherwise).
    pub fn id(&self, name: &str) -> Result<Snowflake, ApiError> {
        snowflake(self.text(name))
    }
}

/// What the table says of a request's method and path.
pub enum Lookup<'a> {
    Route(&'static Route, Params<'a>),
    /// The path is served, but not with this method: these are.
    WrongMethod(Vec<&'static str>),
    NotFound,
}

/// The route for `method` at `path`. The path decides first: of the templates that match,
/// the most literal (`messages/search` is never `messages/{message_id}`); then the method:
/// one that template does not serve is a 405 listing those it does.
pub fn find<'a>(routes: &'static [Route], method: &Method, path: &'a [&'a str]) -> Lookup<'a> {
    let matching = || routes.iter().filter_map(|r| r.matches(path).map(|rank| (r, rank)));
    let Some(best) = matching().map(|(_, rank)| rank).max() else { return Lookup::NotFound };
    let at_best = || matching().filter(move |(_, rank)| *rank == best).map(|(r, _)| r);
    let verb = Verb::of(method);
    if let Some(route) = at_best().find(|r| Some(r.verb) == verb) {
        return Lookup::Route(route, Params { route, path });
    }
    let mut allowed: Vec<&'static str> = at_best().map(|r| r.verb.uppercase()).collect();
    allowed.sort_unstable();
    allowed.dedup();
    Lookup::WrongMethod(allowed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noop() -> Handler {
        handler!(|ctx, p| Err(ApiError::not_found(0, "noop")))
    }

    #[test]
    fn literal_segments_win_over_parameters_whatever_the_order() {
        static TABLE: std::sync::OnceLock<Vec<Route>> = std::sync::OnceLock::new();
        let table: &'static [Route] = TABLE.get_or_init(|| {
            vec![
                route(
                    Verb::Get,
                    "/channels/{channel_id}/messages/{message_id}",
                    Bucket::MessageReads,
                    noop(),
                    "get",
                    "",
                ),
                route(Verb::Get, "/channels/{channel_id}/messages/search", Bucket::MessageReads, noop(), "search", ""),
                route(
                    Verb::Delete,
                    "/channels/{channel_id}/messages/{message_id}",
                    Bucket::MessageDelete,
                    noop(),
                    "d",
                    "",
                ),
            ]
        });
        let at = |path: &'static [&'static str], method| match find(table, &method, path) {
            Lookup::Route(r, p) => Ok((r.id, p.get("message_id"), r.major(&p))),
            Lookup::WrongMethod(allowed) => Err(allowed.join(", ")),
            Lookup::NotFound => Err("404".into()),
        };
        assert_eq!(at(&["channels", "5", "messages", "search"], Method::GET), Ok(("search", None, 5)));
        assert_eq!(at(&["channels", "5", "messages", "7"], Method::GET), Ok(("get", Some("7"), 5)));
        // The path decides first: `search` is the search's path, whose only method is GET.
        assert_eq!(at(&["channels", "5", "messages", "search"], Method::DELETE), Err("GET".into()));
        assert_eq!(at(&["channels", "5", "messages", "7"], Method::PUT), Err("DELETE, GET".into()));
        assert_eq!(at(&["channels", "5", "messages"], Method::GET), Err("404".into()));
        assert_eq!(at(&["channels", "5", "messages", "7", "x"], Method::GET), Err("404".into()));
    }
}
