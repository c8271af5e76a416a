"""The source fetcher port on dulwich: git repositories fetched without a git binary."""

from worpen_infra.git.source import GitSourceFetcher

__all__ = ["GitSourceFetcher"]
