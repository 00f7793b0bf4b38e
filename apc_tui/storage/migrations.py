"""Append-only, named schema migrations, applied in order and recorded in `_migrations`.

Never edit a released migration: add the next one. Each receives the sqlite_utils Database.
"""

from __future__ import annotations

from collections.abc import Callable

import sqlite_utils

MIGRATIONS: list[tuple[str, Callable[[sqlite_utils.Database], None]]] = []


def execute_script(db: sqlite_utils.Database, script: str) -> None:
    """Run statements one by one: sqlite3's executescript would COMMIT the migration's transaction."""
    for statement in script.split(";\n"):
        if statement.strip():
            db.execute(statement)


def migration(fn: Callable[[sqlite_utils.Database], None]):
    MIGRATIONS.append((fn.__name__, fn))
    return fn


@migration
def m001_initial(db: sqlite_utils.Database) -> None:
    execute_script(
        db,
        """
        CREATE TABLE characters (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            language TEXT NOT NULL DEFAULT 'en',
            source_text TEXT NOT NULL DEFAULT '',
            card_json TEXT,               -- the imported card, unknown fields preserved
            source_file TEXT,             -- file name it was imported from (no directory)
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );
        CREATE TABLE passages (
            id INTEGER PRIMARY KEY,
            character_id INTEGER NOT NULL REFERENCES characters(id) ON DELETE CASCADE,
            position INTEGER NOT NULL,
            text TEXT NOT NULL,
            UNIQUE (character_id, position)
        );
        CREATE TABLE statements (
            id INTEGER PRIMARY KEY,
            character_id INTEGER NOT NULL REFERENCES characters(id) ON DELETE CASCADE,
            position INTEGER NOT NULL,
            text TEXT NOT NULL,
            passage_id INTEGER REFERENCES passages(id) ON DELETE SET NULL,
            origin TEXT NOT NULL DEFAULT 'manual',  -- manual | import | split | teacher
            enabled INTEGER NOT NULL DEFAULT 1,
            created_at TEXT NOT NULL,
            UNIQUE (character_id, text)
        );
        CREATE TABLE queries (
            id INTEGER PRIMARY KEY,
            character_id INTEGER NOT NULL REFERENCES characters(id) ON DELETE CASCADE,
            statement_id INTEGER REFERENCES statements(id) ON DELETE CASCADE,
            text TEXT NOT NULL,
            split TEXT NOT NULL DEFAULT 'train',    -- train | eval
            origin TEXT NOT NULL DEFAULT 'teacher',
            created_at TEXT NOT NULL,
            UNIQUE (character_id, statement_id, text)
        );
        CREATE TABLE teacher_labels (
            id INTEGER PRIMARY KEY,
            task TEXT NOT NULL,                      -- relevance | nli
            character_id INTEGER NOT NULL REFERENCES characters(id) ON DELETE CASCADE,
            statement_id INTEGER NOT NULL REFERENCES statements(id) ON DELETE CASCADE,
            query_id INTEGER NOT NULL REFERENCES queries(id) ON DELETE CASCADE,
            response TEXT NOT NULL DEFAULT '',       -- '' for relevance
            intended TEXT,                           -- nli: the label the response was written for
            label TEXT,                              -- the teacher's label (second pass for nli)
            teacher TEXT NOT NULL,
            created_at TEXT NOT NULL,
            UNIQUE (task, statement_id, query_id, response)
        );
        CREATE TABLE teacher_calls (
            id INTEGER PRIMARY KEY,
            character_id INTEGER REFERENCES characters(id) ON DELETE CASCADE,
            stage TEXT NOT NULL,
            item_key TEXT NOT NULL,
            teacher TEXT NOT NULL,
            status TEXT NOT NULL,                    -- ok | failed | unparsed
            raw_reply TEXT,
            error TEXT,
            prompt_tokens INTEGER,
            completion_tokens INTEGER,
            created_at TEXT NOT NULL
        );
        CREATE INDEX teacher_calls_item ON teacher_calls (stage, item_key);
        CREATE TABLE conversations (
            id INTEGER PRIMARY KEY,
            character_id INTEGER NOT NULL REFERENCES characters(id) ON DELETE CASCADE,
            title TEXT NOT NULL DEFAULT '',
            created_at TEXT NOT NULL
        );
        -- A tree: siblings (same parent) are alternative candidates.
        CREATE TABLE messages (
            id INTEGER PRIMARY KEY,
            conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
            parent_id INTEGER REFERENCES messages(id) ON DELETE CASCADE,
            role TEXT NOT NULL,                      -- user | assistant
            content TEXT NOT NULL,
            model_spec TEXT,                         -- assistant candidates: how it was made
            method TEXT,
            k INTEGER,
            params_json TEXT,
            prompt_json TEXT,                        -- the exact messages sent
            retrieved_json TEXT,
            origin TEXT NOT NULL DEFAULT 'model',    -- model | user | edited
            created_at TEXT NOT NULL
        );
        CREATE INDEX messages_parent ON messages (conversation_id, parent_id);
        CREATE TABLE apc_scores (
            id INTEGER PRIMARY KEY,
            character_id INTEGER REFERENCES characters(id) ON DELETE CASCADE,
            message_id INTEGER REFERENCES messages(id) ON DELETE CASCADE,
            profile TEXT NOT NULL,
            query TEXT NOT NULL,
            response TEXT NOT NULL,
            n_statements INTEGER NOT NULL,
            apc REAL NOT NULL,
            delta_apc REAL NOT NULL,
            active REAL NOT NULL,
            passive REAL NOT NULL,
            created_at TEXT NOT NULL,
            UNIQUE (message_id, profile)
        );
        CREATE TABLE apc_terms (
            score_id INTEGER NOT NULL REFERENCES apc_scores(id) ON DELETE CASCADE,
            position INTEGER NOT NULL,
            statement_id INTEGER REFERENCES statements(id) ON DELETE SET NULL,
            statement TEXT NOT NULL,
            p_yes REAL NOT NULL,
            p_entailed REAL NOT NULL,
            p_neutral REAL NOT NULL,
            p_contradicted REAL NOT NULL,
            term REAL NOT NULL,
            delta_term REAL NOT NULL,
            PRIMARY KEY (score_id, position)
        );
        CREATE TABLE preferences (
            id INTEGER PRIMARY KEY,
            character_id INTEGER NOT NULL REFERENCES characters(id) ON DELETE CASCADE,
            message_a_id INTEGER NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
            message_b_id INTEGER NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
            choice TEXT NOT NULL CHECK (choice IN ('a', 'b', 'tie', 'both_bad')),
            annotator TEXT NOT NULL DEFAULT '',
            shown_order TEXT NOT NULL DEFAULT 'ab',  -- ab: A shown left; ba: A shown right
            apc_visible INTEGER NOT NULL DEFAULT 0,
            ideal_response TEXT,
            note TEXT,
            created_at TEXT NOT NULL
        );
        CREATE TABLE preference_pairs (
            id INTEGER PRIMARY KEY,
            character_id INTEGER NOT NULL REFERENCES characters(id) ON DELETE CASCADE,
            pair_key TEXT NOT NULL UNIQUE,           -- hash of prompt + both replies: no duplicates
            prompt_json TEXT NOT NULL,
            chosen TEXT NOT NULL,
            rejected TEXT NOT NULL,
            source TEXT NOT NULL,                    -- apc | human | edited
            chosen_apc REAL,
            rejected_apc REAL,
            annotator TEXT,
            model_spec TEXT,
            method TEXT,
            weight REAL NOT NULL DEFAULT 1.0,
            chosen_message_id INTEGER REFERENCES messages(id) ON DELETE SET NULL,
            rejected_message_id INTEGER REFERENCES messages(id) ON DELETE SET NULL,
            preference_id INTEGER REFERENCES preferences(id) ON DELETE SET NULL,
            query_id INTEGER REFERENCES queries(id) ON DELETE SET NULL,
            created_at TEXT NOT NULL
        );
        CREATE TABLE jobs (
            id INTEGER PRIMARY KEY,
            kind TEXT NOT NULL,
            config_json TEXT NOT NULL DEFAULT '{}',
            status TEXT NOT NULL DEFAULT 'queued',   -- queued | running | done | failed | cancelled | dead
            progress REAL NOT NULL DEFAULT 0,
            progress_text TEXT NOT NULL DEFAULT '',
            pid INTEGER,
            heartbeat_at TEXT,
            cancel_requested INTEGER NOT NULL DEFAULT 0,
            checkpoint_json TEXT,
            artifacts_json TEXT NOT NULL DEFAULT '{}',
            error TEXT,
            parent_job_id INTEGER REFERENCES jobs(id) ON DELETE SET NULL,
            character_id INTEGER REFERENCES characters(id) ON DELETE SET NULL,
            created_at TEXT NOT NULL,
            started_at TEXT,
            finished_at TEXT
        );
        CREATE TABLE job_logs (
            id INTEGER PRIMARY KEY,
            job_id INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
            ts TEXT NOT NULL,
            level TEXT NOT NULL DEFAULT 'info',
            message TEXT NOT NULL
        );
        CREATE TABLE job_metrics (
            job_id INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
            step INTEGER NOT NULL,
            name TEXT NOT NULL,
            value REAL NOT NULL,
            PRIMARY KEY (job_id, step, name)
        );
        CREATE TABLE adapters (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            character_id INTEGER REFERENCES characters(id) ON DELETE SET NULL,
            kind TEXT NOT NULL,                      -- dpo | eu
            base_model TEXT NOT NULL,
            path TEXT NOT NULL,
            pairs_hash TEXT,
            pair_ids_json TEXT,
            config_json TEXT NOT NULL DEFAULT '{}',
            metrics_json TEXT NOT NULL DEFAULT '{}',
            job_id INTEGER REFERENCES jobs(id) ON DELETE SET NULL,
            created_at TEXT NOT NULL
        );
        CREATE TABLE eval_runs (
            id INTEGER PRIMARY KEY,
            character_id INTEGER NOT NULL REFERENCES characters(id) ON DELETE CASCADE,
            model_spec TEXT NOT NULL,
            adapter_id INTEGER REFERENCES adapters(id) ON DELETE SET NULL,
            profile TEXT NOT NULL,
            config_json TEXT NOT NULL DEFAULT '{}',
            job_id INTEGER REFERENCES jobs(id) ON DELETE SET NULL,
            created_at TEXT NOT NULL
        );
        CREATE TABLE eval_results (
            run_id INTEGER NOT NULL REFERENCES eval_runs(id) ON DELETE CASCADE,
            method TEXT NOT NULL,
            variant TEXT NOT NULL,                   -- base | adapter
            n INTEGER NOT NULL,
            delta_apc_mean REAL NOT NULL,
            ci_low REAL NOT NULL,
            ci_high REAL NOT NULL,
            active_mean REAL NOT NULL,
            passive_mean REAL NOT NULL,
            apc_mean REAL NOT NULL,
            PRIMARY KEY (run_id, method, variant)
        );
        CREATE TABLE eval_samples (
            id INTEGER PRIMARY KEY,
            run_id INTEGER NOT NULL REFERENCES eval_runs(id) ON DELETE CASCADE,
            method TEXT NOT NULL,
            variant TEXT NOT NULL,
            query TEXT NOT NULL,
            response TEXT NOT NULL,
            apc REAL NOT NULL,
            delta_apc REAL NOT NULL,
            UNIQUE (run_id, method, variant, query)
        );
        """
    )


@migration
def m002_eval_sample_parts(db: sqlite_utils.Database) -> None:
    """Evaluation samples keep the active and passive parts (the tables report their means)."""
    execute_script(
        db,
        """
        ALTER TABLE eval_samples ADD COLUMN active REAL NOT NULL DEFAULT 0;
        ALTER TABLE eval_samples ADD COLUMN passive REAL NOT NULL DEFAULT 0;
        ALTER TABLE eval_samples ADD COLUMN n_statements INTEGER NOT NULL DEFAULT 0
        """,
    )


@migration
def m008_adapter_lineage(db: sqlite_utils.Database) -> None:
    """How an adapter was trained across the box: world size, strategy, backend, each rank's device."""
    execute_script(db, "ALTER TABLE adapters ADD COLUMN lineage_json TEXT")
