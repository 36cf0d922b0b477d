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
    window.location.assign(body.home);
    return;
  }
  error.textContent = response.status === 429 ? form.dataset.throttled : form.dataset.bad;
  error.hidden = false;
});
