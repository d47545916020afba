//! Schedules: a cron expression in a time zone, and what happens to the times missed while no process ran.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use croner::parser::{CronParser, Seconds};
use croner::Cron;
use serde::{Deserialize, Serialize};

/// A parsed cron expression in a named time zone: five fields (minute, hour, day of month, month, day of
/// week), or six with seconds first; `@hourly`, `@daily` and the other aliases; `L`, `W` and `#`. Times are
/// found in the zone's wall-clock time, so `0 9 * * *` in `Europe/Berlin` is nine in the morning there in
/// winter and in summer.
#[derive(Clone)]
pub struct CronSchedule {
    cron: Cron,
    zone: chrono_tz::Tz,
}

/// Why a cron expression or a time zone was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("`{expression}` is not a cron expression: {reason}")]
    Cron { expression: String, reason: String },
    #[error("`{0}` is not a time zone name of the IANA database (such as `UTC` or `Europe/Berlin`)")]
    Zone(String),
    #[error("`{0}` never comes")]
    Never(String),
}

impl CronSchedule {
    /// Parses `expression` in the time zone `zone` (an IANA name), and checks that it has a next time.
    pub fn parse(expression: &str, zone: &str) -> Result<CronSchedule, ScheduleError> {
        let expression = expression.trim();
        if expression.len() > 200 {
            let reason = "longer than 200 characters".into();
            return Err(ScheduleError::Cron { expression: expression.chars().take(200).collect(), reason });
        }
        let parser = CronParser::builder().seconds(Seconds::Optional).build();
        let cron = parser
            .parse(expression)
            .map_err(|e| ScheduleError::Cron { expression: expression.into(), reason: e.to_string() })?;
        let zone = chrono_tz::Tz::from_str(zone).map_err(|_| ScheduleError::Zone(zone.chars().take(80).collect()))?;
        let schedule = CronSchedule { cron, zone };
        if schedule.next_after(Utc::now()).is_none() {
            return Err(ScheduleError::Never(expression.into()));
        }
        Ok(schedule)
    }

    /// The first time strictly after `after`, or `None` when there is none (a date that never comes).
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = after.with_timezone(&self.zone);
        self.cron.find_next_occurrence(&local, false).ok().map(|t| t.with_timezone(&Utc))
    }

    /// The times in `(after, until]`, at most `limit`, oldest first.
    pub fn times_between(&self, after: DateTime<Utc>, until: DateTime<Utc>, limit: usize) -> Vec<DateTime<Utc>> {
        let mut times = Vec::new();
        let mut at = after;
        while times.len() < limit {
            match self.next_after(at) {
                Some(next) if next <= until => {
                    times.push(next);
                    at = next;
                }
                _ => break,
            }
        }
        times
    }

    /// The last time at or before `at`, or `None` when there is none.
    pub fn last_at_or_before(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = at.with_timezone(&self.zone);
        self.cron.find_previous_occurrence(&local, true).ok().map(|t| t.with_timezone(&Utc))
    }

    /// In words, for people (`At 09:00 on Monday`).
    pub fn describe(&self) -> String {
        self.cron.describe()
    }
}

impl fmt::Debug for CronSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CronSchedule({} in {})", self.cron.pattern, self.zone)
    }
}

/// What a schedule does with the times that passed while no NOVA process was running (or while it was
/// paused): how late is late is [`MissedPolicy::GRACE_SECONDS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MissedPolicy {
    /// One job for the latest missed time, then the schedule as usual.
    #[default]
    Latest,
    /// A job for every missed time, oldest first (at most [`MissedPolicy::MAX_CATCH_UP`]).
    All,
    /// No job for a time missed by more than the grace; the schedule goes on from now.
    Skip,
}

impl MissedPolicy {
    /// A time this late or less is not missed: it runs, whatever the policy.
    pub const GRACE_SECONDS: i64 = 60;
    /// Jobs one catch-up makes at most under [`MissedPolicy::All`].
    pub const MAX_CATCH_UP: usize = 1000;

    pub fn as_str(self) -> &'static str {
        match self {
            MissedPolicy::Latest => "latest",
            MissedPolicy::All => "all",
            MissedPolicy::Skip => "skip",
        }
    }

    /// The times that get a job when a schedule whose next time was `next` (not after `now`) is fired at
    /// `now`, oldest first: every time from `next` to `now` (`all`, at most [`MissedPolicy::MAX_CATCH_UP`]),
    /// the latest one (`latest`), or the latest one if it is at most [`MissedPolicy::GRACE_SECONDS`] late
    /// (`skip`).
    pub fn times_to_enqueue(self, cron: &CronSchedule, next: DateTime<Utc>, now: DateTime<Utc>) -> Vec<DateTime<Utc>> {
        if next > now {
            return Vec::new();
        }
        let latest = cron.last_at_or_before(now).filter(|t| *t >= next).unwrap_or(next);
        match self {
            MissedPolicy::All => {
                let mut times = vec![next];
                times.extend(cron.times_between(next, now, Self::MAX_CATCH_UP - 1));
                times
            }
            MissedPolicy::Latest => vec![latest],
            MissedPolicy::Skip if (now - latest).num_seconds() <= Self::GRACE_SECONDS => vec![latest],
            MissedPolicy::Skip => Vec::new(),
        }
    }
}

impl FromStr for MissedPolicy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "latest" => Ok(MissedPolicy::Latest),
            "all" => Ok(MissedPolicy::All),
            "skip" => Ok(MissedPolicy::Skip),
            other => Err(format!("unknown missed-time policy `{other}` (latest, all, skip)")),
        }
    }
}

/// A schedule as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Schedule {
    pub id: crate::ScheduleId,
    /// The client's own label.
    pub name: Option<String>,
    /// The cron expression, as given.
    pub cron: String,
    /// The IANA time zone its times are read in.
    pub timezone: String,
    /// The expression in words.
    pub description: String,
    pub workflow: crate::Workflow,
    /// The input of every job it enqueues.
    pub input: serde_json::Value,
    pub priority: i64,
    pub max_attempts: u32,
    pub timeout_seconds: u64,
    pub missed: MissedPolicy,
    /// A paused schedule enqueues nothing; resumed, it goes on from its next time after the resumption.
    pub paused: bool,
    /// The next time it enqueues a job (while not paused).
    pub next_run_at: DateTime<Utc>,
    /// The last time it enqueued a job for, and that job.
    pub last_run_at: Option<DateTime<Utc>>,
    pub last_job_id: Option<crate::JobId>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
    }

    #[test]
    fn times_follow_the_zone_s_wall_clock_across_daylight_saving() {
        let nine = CronSchedule::parse("0 9 * * *", "Europe/Berlin").unwrap();
        // Winter: UTC+1; summer: UTC+2.
        assert_eq!(nine.next_after(utc(2026, 1, 15, 12, 0)), Some(utc(2026, 1, 16, 8, 0)));
        assert_eq!(nine.next_after(utc(2026, 7, 15, 12, 0)), Some(utc(2026, 7, 16, 7, 0)));
        let utc_nine = CronSchedule::parse("0 9 * * *", "UTC").unwrap();
        assert_eq!(utc_nine.next_after(utc(2026, 7, 15, 12, 0)), Some(utc(2026, 7, 16, 9, 0)));
    }

    #[test]
    fn seconds_aliases_and_bad_input() {
        let every_ten = CronSchedule::parse("*/10 * * * * *", "UTC").unwrap();
        let from = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 3).unwrap();
        assert_eq!(every_ten.next_after(from), Some(Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 10).unwrap()));
        assert!(CronSchedule::parse("@hourly", "UTC").is_ok());
        assert!(matches!(CronSchedule::parse("61 * * * *", "UTC"), Err(ScheduleError::Cron { .. })));
        assert!(matches!(CronSchedule::parse("every day", "UTC"), Err(ScheduleError::Cron { .. })));
        assert!(matches!(CronSchedule::parse("0 9 * * *", "Mars/Olympus"), Err(ScheduleError::Zone(_))));
        assert!(matches!(CronSchedule::parse("0 0 30 2 *", "UTC"), Err(ScheduleError::Never(_))));
    }

    #[test]
    fn times_between_are_bounded_and_ordered() {
        let hourly = CronSchedule::parse("0 * * * *", "UTC").unwrap();
        let times = hourly.times_between(utc(2026, 1, 1, 0, 30), utc(2026, 1, 1, 5, 0), 100);
        assert_eq!(times, (1..=5).map(|h| utc(2026, 1, 1, h, 0)).collect::<Vec<_>>());
        assert_eq!(hourly.times_between(utc(2026, 1, 1, 0, 30), utc(2026, 1, 1, 5, 0), 2).len(), 2);
    }

    #[test]
    fn each_policy_enqueues_what_it_says_after_downtime() {
        let hourly = CronSchedule::parse("0 * * * *", "UTC").unwrap();
        let next = utc(2026, 1, 1, 1, 0);
        // Down from before 01:00 until 05:00:30: five times missed, the last one 30 s ago.
        let now = Utc.with_ymd_and_hms(2026, 1, 1, 5, 0, 30).unwrap();
        let all: Vec<_> = (1..=5).map(|h| utc(2026, 1, 1, h, 0)).collect();
        assert_eq!(MissedPolicy::All.times_to_enqueue(&hourly, next, now), all);
        assert_eq!(MissedPolicy::Latest.times_to_enqueue(&hourly, next, now), [utc(2026, 1, 1, 5, 0)]);
        assert_eq!(MissedPolicy::Skip.times_to_enqueue(&hourly, next, now), [utc(2026, 1, 1, 5, 0)], "on time");
        // At 05:30 the 05:00 time is half an hour late: skipped.
        let later = utc(2026, 1, 1, 5, 30);
        assert!(MissedPolicy::Skip.times_to_enqueue(&hourly, next, later).is_empty());
        assert_eq!(MissedPolicy::Latest.times_to_enqueue(&hourly, next, later), [utc(2026, 1, 1, 5, 0)]);
        // Not due yet: nothing.
        assert!(MissedPolicy::All.times_to_enqueue(&hourly, later, next).is_empty());
        // A catch-up is bounded.
        let every_second = CronSchedule::parse("* * * * * *", "UTC").unwrap();
        let day_later = next + chrono::Duration::days(1);
        assert_eq!(
            MissedPolicy::All.times_to_enqueue(&every_second, next, day_later).len(),
            MissedPolicy::MAX_CATCH_UP
        );
        assert_eq!("skip".parse::<MissedPolicy>(), Ok(MissedPolicy::Skip));
    }
}
