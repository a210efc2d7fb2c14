from ladder.checks import insecure_keys


def test_the_deploy_check_flags_development_keys(settings):
    settings.SECRET_KEY = "insecure-dev-key-only-for-make-run"
    settings.LADDER_PSEUDONYM_KEY = "insecure-dev-pseudonym-key"
    assert {w.id for w in insecure_keys(None)} == {"ladder.W001", "ladder.W002"}
    settings.SECRET_KEY = "s" * 50
    settings.LADDER_PSEUDONYM_KEY = "p" * 50
    assert insecure_keys(None) == []
