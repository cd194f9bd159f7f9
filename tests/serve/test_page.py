"""The web page in a real headless Chromium (Debian's ``chromium`` + ``chromium-driver``, driven
by selenium): upload an example image, see its caption; ask a question, see the answer."""

from __future__ import annotations

import shutil

import pytest

from tests.serve.conftest import EXAMPLES, pixels

webdriver = pytest.importorskip("selenium.webdriver")

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
DRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


@pytest.fixture
def browser():
    from selenium.webdriver.chrome.service import Service

    if not (shutil.which(CHROMIUM) and shutil.which(DRIVER)):
        pytest.skip("needs chromium and chromium-driver (apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=900,800"):  # fmt: skip
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    yield driver
    driver.quit()


def test_page_shows_caption_and_answer(server, library, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    image = EXAMPLES[-1]
    browser.get(f"{server['url']}/")
    browser.find_element(By.ID, "file").send_keys(str(image))

    def settled(element_id, busy):
        return lambda d: d.find_element(By.ID, element_id).text not in ("", busy)

    WebDriverWait(browser, 60).until(settled("caption", "captioning\u2026"))
    task = library["caption"]
    assert (
        browser.find_element(By.ID, "caption").text == task.caption_pixels(pixels(task, image))[0]
    )

    question = "what color is the circle?"
    browser.find_element(By.ID, "question").send_keys(question)
    browser.find_element(By.ID, "ask-button").click()
    WebDriverWait(browser, 60).until(settled("answer", "thinking\u2026"))
    vqa = library["vqa"]
    assert browser.find_element(By.ID, "answer").text == vqa.answer(pixels(vqa, image), question)[0]
    assert browser.save_screenshot(str(tmp_path / "page.png"))
