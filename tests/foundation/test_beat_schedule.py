import billing_project.settings as settings_module
from billing_project.celery import app


def test_every_areas_beat_schedule_is_installed():
    area_schedules = {name: value for name, value in vars(settings_module).items()
                      if name.endswith("_BEAT_SCHEDULE") and name != "CELERY_BEAT_SCHEDULE"}
    assert len(area_schedules) >= 5
    for name, schedule in area_schedules.items():
        for entry in schedule:
            assert entry in settings_module.CELERY_BEAT_SCHEDULE, f"{entry} of {name} is never scheduled"


def test_every_scheduled_task_exists():
    app.loader.import_default_modules()
    for entry, spec in settings_module.CELERY_BEAT_SCHEDULE.items():
        assert spec["task"] in app.tasks, f"beat entry {entry} names an unknown task {spec['task']}"
