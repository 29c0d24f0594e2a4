"""Runs deployed Lambda functions' handlers from the repository, one worker process per execution environment."""
