//! A cell on disk: what is found, what replays and deletes do, what survives a reopen.

use guildhall_core::stream::LogKey;
use guildhall_core::Snowflake;
use guildhall_search::{Cell, CellOp, IndexDoc, SearchRequest, Sort};

const GUILD: Snowflake = Snowflake(1);
const OTHER_GUILD: Snowflake = Snowflake(2);
const GENERAL: Snowflake = Snowflake(10);
const HIDDEN: Snowflake = Snowflake(11);
const ALICE: Snowflake = Snowflake(100);
const BOT: Snowflake = Snowflake(101);

fn doc(id: u64, channel: Snowflake, author: Snowflake, text: &str, tags: &[&str]) -> CellOp {
    CellOp::Upsert(IndexDoc {
        gen: 0,
        scope: GUILD,
        id: Snowflake(id),
        channel,
        author,
        text: vec![text.into()],
        tags: tags.iter().map(|t| t.to_string()).collect(),
    })
}

fn search(content: &str) -> SearchRequest {
    SearchRequest {
        scope: GUILD,
        channels: vec![GENERAL, HIDDEN],
        content: Some(content.into()),
        limit: 25,
        ..Default::default()
    }
}

fn ids(cell: &Cell, request: &SearchRequest) -> Vec<u64> {
    request.run(&cell.reader()).unwrap().page.into_iter().map(|(id, _)| id.0).collect()
}

fn seeded(dir: &std::path::Path) -> Cell {
    let mut cell = Cell::open(dir).unwrap();
    for op in [
        doc(1, GENERAL, ALICE, "Hello wonderful World", &[]),
        doc(
            2,
            GENERAL,
            BOT,
            "the café is open https://example.com",
            &["has:link", "link_hostname:example.com", "author_type:bot"],
        ),
        doc(3, HIDDEN, ALICE, "secret hello", &[]),
        doc(4, GENERAL, ALICE, "明日は東京都に行きます", &["mentions:101"]),
        doc(5, GENERAL, ALICE, "world hello", &[]),
    ] {
        cell.apply(op).unwrap();
    }
    cell.commit().unwrap();
    cell
}

#[test]
fn words_match_as_prefixes_folded_and_quoted_words_as_phrases() {
    let dir = tempfile::tempdir().unwrap();
    let cell = seeded(dir.path());
    assert_eq!(ids(&cell, &search("hel")), vec![5, 3, 1], "a prefix, newest first");
    assert_eq!(ids(&cell, &search("HELLO world")), vec![5, 1], "every word, any order, any case");
    assert!(ids(&cell, &search("\"hello world\"")).is_empty(), "the words are never side by side");
    assert_eq!(ids(&cell, &search("\"hello wonderful\"")), vec![1], "a phrase is a phrase");
    assert_eq!(ids(&cell, &search("\"world hello\"")), vec![5]);
    let mut loose = search("\"hello world\"");
    loose.slop = 1;
    assert_eq!(ids(&cell, &loose), vec![1], "slop lets a word stand between");
    assert_eq!(ids(&cell, &search("CAFE")), vec![2], "accents fold");
    assert_eq!(ids(&cell, &search("nothing")), Vec::<u64>::new());
}

#[test]
fn cjk_text_is_found_by_any_substring_and_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let cell = seeded(dir.path());
    for query in ["東京", "京都", "東京都に", "明", "行きます", "都に行"] {
        assert_eq!(ids(&cell, &search(query)), vec![4], "{query}");
    }
    assert!(ids(&cell, &search("京東")).is_empty(), "characters in another order are another word");
}

#[test]
fn filters_channels_authors_tags_and_ids() {
    let dir = tempfile::tempdir().unwrap();
    let cell = seeded(dir.path());
    let all = |f: &dyn Fn(&mut SearchRequest)| {
        let mut r = SearchRequest { scope: GUILD, channels: vec![GENERAL, HIDDEN], limit: 25, ..Default::default() };
        f(&mut r);
        ids(&cell, &r)
    };
    assert_eq!(all(&|_| {}), vec![5, 4, 3, 2, 1]);
    assert_eq!(all(&|r| r.channels = vec![GENERAL]), vec![5, 4, 2, 1], "only channels the caller may read");
    assert_eq!(all(&|r| r.channels = vec![]), Vec::<u64>::new(), "no channel, nothing");
    assert_eq!(all(&|r| r.authors = vec![BOT]), vec![2]);
    assert_eq!(all(&|r| r.any_of_tags = vec![vec!["has:link".into()]]), vec![2]);
    assert_eq!(all(&|r| r.none_of_tags = vec!["has:link".into()]), vec![5, 4, 3, 1]);
    assert_eq!(all(&|r| r.any_of_tags = vec![vec!["mentions:101".into(), "has:link".into()]]), vec![4, 2], "any of");
    assert_eq!(
        all(&|r| {
            r.after = Some(Snowflake(2));
            r.before = Some(Snowflake(5))
        }),
        vec![4, 3]
    );
    assert_eq!(all(&|r| r.scope = OTHER_GUILD), Vec::<u64>::new(), "another guild's documents");
    assert_eq!(all(&|r| r.only_about = Some(BOT)), vec![4, 2], "a blind bot: its own and those mentioning it");
    assert_eq!(all(&|r| r.sort = Sort::Oldest), vec![1, 2, 3, 4, 5]);
    let page = {
        let r =
            SearchRequest { scope: GUILD, channels: vec![GENERAL, HIDDEN], limit: 2, offset: 1, ..Default::default() };
        r.run(&cell.reader()).unwrap()
    };
    assert_eq!(
        (page.total, page.page.iter().map(|(id, _)| id.0).collect::<Vec<_>>()),
        (5, vec![4, 3]),
        "a page and the total"
    );
}

#[test]
fn relevance_puts_the_better_match_first() {
    let dir = tempfile::tempdir().unwrap();
    let mut cell = Cell::open(dir.path()).unwrap();
    cell.apply(doc(1, GENERAL, ALICE, "rust rust rust", &[])).unwrap();
    cell.apply(doc(2, GENERAL, ALICE, "rust and a very long sentence about other things entirely", &[])).unwrap();
    cell.commit().unwrap();
    let mut r = search("rust");
    r.sort = Sort::Relevance;
    assert_eq!(ids(&cell, &r), vec![1, 2]);
}

#[test]
fn replays_are_idempotent_updates_replace_and_deletes_remove() {
    let dir = tempfile::tempdir().unwrap();
    let mut cell = seeded(dir.path());
    // The same upserts again: no second document.
    cell.apply(doc(1, GENERAL, ALICE, "Hello wonderful World", &[])).unwrap();
    cell.apply(doc(1, GENERAL, ALICE, "Hello wonderful World", &[])).unwrap();
    cell.commit().unwrap();
    assert_eq!(cell.count(GUILD).unwrap(), 5);
    cell.apply(doc(1, GENERAL, ALICE, "edited text", &[])).unwrap();
    cell.apply(CellOp::Delete { scope: GUILD, gen: 0, id: Snowflake(5) }).unwrap();
    cell.commit().unwrap();
    assert_eq!(ids(&cell, &search("wonderful")), Vec::<u64>::new(), "the old text is gone");
    assert_eq!(ids(&cell, &search("edited")), vec![1]);
    assert_eq!(ids(&cell, &search("hello")), vec![3]);
    cell.apply(CellOp::DeleteChannel { scope: GUILD, channel: HIDDEN }).unwrap();
    cell.apply(CellOp::PurgeAuthor { scope: GUILD, author: ALICE, since: Snowflake(4) }).unwrap();
    cell.commit().unwrap();
    let r = SearchRequest { scope: GUILD, channels: vec![GENERAL, HIDDEN], limit: 25, ..Default::default() };
    assert_eq!(ids(&cell, &r), vec![2, 1], "channel 11 gone; Alice's from 4 on gone");
}

#[test]
fn one_message_in_two_scopes_is_two_documents() {
    let dir = tempfile::tempdir().unwrap();
    let mut cell = Cell::open(dir.path()).unwrap();
    let copy = |scope: Snowflake| {
        CellOp::Upsert(IndexDoc {
            gen: 0,
            scope,
            id: Snowflake(9),
            channel: GENERAL,
            author: ALICE,
            text: vec!["dm text".into()],
            tags: vec![],
        })
    };
    cell.apply(copy(ALICE)).unwrap();
    cell.apply(copy(BOT)).unwrap();
    cell.commit().unwrap();
    assert_eq!((cell.count(ALICE).unwrap(), cell.count(BOT).unwrap()), (1, 1));
    cell.apply(CellOp::Delete { scope: BOT, gen: 0, id: Snowflake(9) }).unwrap();
    cell.commit().unwrap();
    assert_eq!((cell.count(ALICE).unwrap(), cell.count(BOT).unwrap()), (1, 0));
}

#[test]
fn applied_seqs_are_committed_with_the_documents_and_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let log = LogKey::Guild(GUILD);
    {
        let mut cell = Cell::open(dir.path()).unwrap();
        cell.apply(doc(1, GENERAL, ALICE, "kept", &[])).unwrap();
        cell.set_applied(log, 7);
        cell.commit().unwrap();
        cell.apply(doc(2, GENERAL, ALICE, "staged only", &[])).unwrap();
        cell.set_applied(log, 8);
        assert_eq!(cell.applied(log), 8);
        cell.rollback().unwrap();
        assert_eq!(cell.applied(log), 7, "a rollback forgets what was staged");
        cell.apply(doc(3, GENERAL, ALICE, "never committed", &[])).unwrap();
        cell.set_applied(log, 9);
        // Dropped without a commit: a crash.
    }
    let cell = Cell::open(dir.path()).unwrap();
    assert_eq!(cell.applied(log), 7);
    assert_eq!(cell.applied(LogKey::Dm(GUILD)), 0, "another log");
    assert_eq!(cell.count(GUILD).unwrap(), 1);
}
