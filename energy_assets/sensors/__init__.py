"""What starts runs: the inboxes, the measure job and its schedules, notifications, moderation, the Launchpad job."""
