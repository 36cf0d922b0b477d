// Signs in with the JSON API, then opens the console for the account's role.
const form = document.getElementById('login');
const error = form.querySelector('.error');

form.addEventListener('submit', async (event) => {
  event.preventDefault();
  error.hidden = true;
  const data = new FormData(form);
  const response = await fetch('/api/auth/login', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ username: data.get('username'), password: data.get('password') }),
  });
  if (response.ok) {
    const body = await response.json();
    // The console tells the user of wrong passwords given for their account
    // since their last sign-in (they know whether those were theirs).
    if (body.failed_attempts > 0) sessionStorage.setItem('careline_failed_attempts', String(body.failed_attempts));
    window.location.assign(body.home);
    return;
  }
  error.textContent = response.status === 429 ? form.dataset.throttled : form.dataset.bad;
  error.hidden = false;
});
