"""The cron schedule port on cronsim."""

from worpen_infra.schedule.cron import CronSimCronSchedule

__all__ = ["CronSimCronSchedule"]
